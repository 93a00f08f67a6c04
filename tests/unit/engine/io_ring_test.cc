#include "engine/io_ring.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

struct Recorder final : IoCompletion {
  int calls = 0;
  int last = 0;
  void on_complete(int result) override {
    ++calls;
    last = result;
  }
};

TEST_CASE("reads and writes complete through their completion") {
  testing::TempDir dir;
  int fd = ::open((dir / "f").c_str(), O_RDWR | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  auto ring = IoRing::create(8).value();
  char out[16] = "hello, ring";
  char in[16] = {};
  Recorder w, r;
  ring->write(fd, out, sizeof(out), 0, 0, &w);
  ring->run_until([&] { return w.calls == 1; });
  CHECK(w.last == sizeof(out));
  ring->read(fd, in, sizeof(in), 0, &r);
  ring->run_until([&] { return r.calls == 1; });
  CHECK(std::string(in) == "hello, ring");
  Recorder bad;
  ring->read(-1, in, sizeof(in), 0, &bad);
  ring->run_until([&] { return bad.calls == 1; });
  CHECK(bad.last == -EBADF);
  CHECK(ring->inflight() == 0);
  ::close(fd);
}

TEST_CASE("deferred completions run later, never inside the call") {
  auto ring = IoRing::create(8).value();
  Recorder d;
  ring->defer(&d, -5);
  CHECK(d.calls == 0);
  CHECK(ring->inflight() == 1);
  ring->run_once(false);
  CHECK(d.calls == 1);
  CHECK(d.last == -5);
  CHECK(ring->inflight() == 0);
}

TEST_CASE("post() crosses threads and wakes a waiting ring") {
  auto ring = IoRing::create(8).value();
  std::atomic<int> ran{0};
  std::thread poster([&] {
    for (int i = 0; i < 1000; ++i) ring->post([&] { ran.fetch_add(1); });
  });
  ring->run_until([&] { return ran.load() == 1000; });
  poster.join();
  CHECK(ran.load() == 1000);
}

TEST_CASE("a PostBatch holds a thread's posts until the outermost batch ends, in order") {
  auto a = IoRing::create(8).value();
  auto b = IoRing::create(8).value();
  std::vector<int> ran_a, ran_b;  // touched only by the rings' thread, this one
  std::promise<void> posted, checked;
  std::thread poster([&] {
    {
      IoRing::PostBatch batch;
      a->post([&] { ran_a.push_back(1); });
      b->post([&] { ran_b.push_back(1); });
      {
        IoRing::PostBatch inner;  // ending it hands nothing over: the outer one is alive
        a->post([&] { ran_a.push_back(2); });
      }
      a->post([&] { ran_a.push_back(3); });
      posted.set_value();
      checked.get_future().wait();
    }
    a->post([&] { ran_a.push_back(4); });  // no batch: at once
  });
  posted.get_future().wait();
  // Nothing has reached either ring while the batch lives (a ring that was woken would
  // dispatch its wake-up completion and the posted functions here).
  CHECK(a->run_once(true, 50) == 0);
  CHECK(b->run_once(true, 50) == 0);
  CHECK(ran_a.empty());
  CHECK(ran_b.empty());
  checked.set_value();
  poster.join();
  a->run_until([&] { return ran_a.size() == 4; });
  b->run_until([&] { return ran_b.size() == 1; });
  CHECK(ran_a == std::vector<int>{1, 2, 3, 4});
  CHECK(ran_b == std::vector<int>{1});
}

TEST_CASE("more submissions than the queue holds are all completed") {
  auto ring = IoRing::create(4).value();
  std::vector<Recorder> recs(100);
  int fd = ::open("/dev/zero", O_RDONLY);
  std::vector<char> buf(100);
  for (int i = 0; i < 100; ++i) ring->read(fd, &buf[i], 1, 0, &recs[i]);
  ring->run_until([&] { return ring->inflight() == 0; });
  for (auto& r : recs) CHECK(r.calls == 1);
  ::close(fd);
}

struct Hook {
  int calls = 0;
  int completions_before = -1;  // the watched completion's calls when the hook last ran
  const Recorder* watched = nullptr;
  static void run(void* arg) {
    auto* h = static_cast<Hook*>(arg);
    ++h->calls;
    h->completions_before = h->watched->calls;
  }
};

TEST_CASE("after_submit() runs once per pair, when the SQEs are submitted, before completions") {
  auto ring = IoRing::create(8).value();
  int fd = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  char byte = 1;
  Recorder read;
  Hook hook, other;
  hook.watched = other.watched = &read;

  SUBCASE("queued outside run_once(): runs before the read's completion is dispatched") {
    ring->read(fd, &byte, 1, 0, &read);
    ring->after_submit(&Hook::run, &hook);
    ring->after_submit(&Hook::run, &hook);  // the same pair: runs once
    ring->after_submit(&Hook::run, &other);
    CHECK(hook.calls == 0);
    ring->run_until([&] { return read.calls == 1; });
    CHECK(hook.calls == 1);
    CHECK(other.calls == 1);
    CHECK(hook.completions_before == 0);
    CHECK(byte == 0);
  }

  SUBCASE("queued by a completion: runs in the same run_once(), before the next wait") {
    struct Chain final : IoCompletion {
      IoRing* ring;
      int fd;
      char* byte;
      Recorder* read;
      Hook* hook;
      void on_complete(int) override {
        ring->read(fd, byte, 1, 0, read);
        ring->after_submit(&Hook::run, hook);
      }
    } chain;
    chain.ring = ring.get();
    chain.fd = fd;
    chain.byte = &byte;
    chain.read = &read;
    chain.hook = &hook;
    ring->defer(&chain, 0);
    ring->run_once(false);
    CHECK(hook.calls == 1);
    CHECK(hook.completions_before == 0);
    ring->run_until([&] { return read.calls == 1; });
    CHECK(hook.calls == 1);
  }
  CHECK(ring->inflight() == 0);
  ::close(fd);
}

}  // namespace
}  // namespace pxd
