// common/work_thread.h: one thread that runs posted jobs in order.
//
// For blocking work that must stay off a latency-sensitive thread (the engine's metadata
// writer posts chunk zeroing here). Jobs run one at a time, in post order, on the thread
// this object owns; the destructor runs every job already posted, then joins.
//
// Thread safety: post() may be called from any thread, including from a job.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace pxd {

class WorkThread {
 public:
  // `name` (at most 15 bytes) names the thread for ps and /proc.
  explicit WorkThread(std::string name);
  ~WorkThread();
  WorkThread(const WorkThread&) = delete;
  WorkThread& operator=(const WorkThread&) = delete;

  void post(std::function<void()> job);

 private:
  void loop();

  const std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                   // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace pxd
