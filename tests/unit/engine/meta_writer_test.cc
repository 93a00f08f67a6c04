// tests/unit/engine/meta_writer_test.cc: batches a ring thread queues without waking the
// metadata writer (MetaWriter::commit_unwoken) are written once it is woken, in queue order.
#include "engine/meta_writer.h"

#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "metadb/meta_store.h"
#include "tests/support/temp_dir.h"

namespace pxd {
namespace {

using namespace std::chrono_literals;

metadb::MetaBatch dirty(uint64_t chunk) {
  metadb::MetaBatch b;
  b.put_dirty(chunk);
  return b;
}

TEST_CASE("a batch queued unwoken is written once the writer is woken, in queue order") {
  testing::TempDir dir;
  metadb::PoolRecord record;
  record.uuid = "00000000-0000-4000-8000-000000000002";
  record.chunk_size = 1 << 20;
  auto created = metadb::MetaStore::create(dir / "meta", record);
  REQUIRE_MESSAGE(created.has_value(), created.error().to_string());
  std::unique_ptr<metadb::MetaStore> store = std::move(created).value();
  std::mutex mu;
  std::vector<int> order;
  auto note = [&](int n) {
    return [&, n](const Status& s) {
      CHECK(s.is_ok());
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(n);
    };
  };
  MetaWriter writer(store.get());
  REQUIRE(writer.commit_and_wait(dirty(0), false).is_ok());
  // Time for the writer thread to go back to waiting.
  std::this_thread::sleep_for(50ms);

  CHECK(writer.commit_unwoken(dirty(1), false, note(1)) == 2);
  // Nothing woke the writer: the batch waits for the ring's wake (a condition variable
  // does not wake on its own on Linux).
  std::this_thread::sleep_for(50ms);
  CHECK(writer.committed_sequence() == 1);
  MetaWriter::wake(&writer);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (writer.committed_sequence() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(writer.committed_sequence() == 2);

  // An unwoken batch followed by an ordinary commit: the commit's wake writes both, in order.
  CHECK(writer.commit_unwoken(dirty(2), false, note(2)) == 3);
  auto fourth = writer.commit_later(dirty(3), false);
  REQUIRE(fourth.wait_for(20s) == std::future_status::ready);
  CHECK(fourth.get().is_ok());
  CHECK(writer.committed_sequence() == 4);
  std::lock_guard<std::mutex> lock(mu);
  CHECK(order == std::vector<int>{1, 2});
  // Waking a writer with nothing queued is harmless.
  MetaWriter::wake(&writer);
}

}  // namespace
}  // namespace pxd
