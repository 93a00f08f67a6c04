// daemon/control_impl.h: the Control capability one connection talks to.
//
// Each method checks what it can on the main loop (permission, shutdown, label and spec
// shape), then runs the Node operation on the ControlWorker thread and fills the results
// when it comes back. Every path answers with a Status.
#pragma once

#include <kj/async.h>

#include "daemon/convert.h"
#include "daemon/node.h"
#include "proto/control.capnp.h"

namespace pxd::daemon {

// The server's side of every call: whether calls are accepted, and in-flight counting.
class CallGate {
 public:
  virtual bool accepting() const = 0;
  virtual void begin_call() = 0;
  virtual void end_call() = 0;

 protected:
  ~CallGate() = default;
};

class ControlImpl final : public proto::Control::Server {
 public:
  ControlImpl(Node& node, const kj::Executor& worker, CallGate& gate, bool allowed)
      : node_(node), worker_(worker), gate_(gate), allowed_(allowed) {}

 protected:
  kj::Promise<void> hello(HelloContext context) override;
  kj::Promise<void> status(StatusContext context) override;
  kj::Promise<void> listPools(ListPoolsContext context) override;
  kj::Promise<void> createVolume(CreateVolumeContext context) override;
  kj::Promise<void> listVolumes(ListVolumesContext context) override;
  kj::Promise<void> inspectVolume(InspectVolumeContext context) override;
  kj::Promise<void> updateVolume(UpdateVolumeContext context) override;
  kj::Promise<void> deleteVolume(DeleteVolumeContext context) override;
  kj::Promise<void> createSnapshot(CreateSnapshotContext context) override;
  kj::Promise<void> listSnapshots(ListSnapshotsContext context) override;
  kj::Promise<void> deleteSnapshot(DeleteSnapshotContext context) override;
  kj::Promise<void> clone(CloneContext context) override;
  kj::Promise<void> restore(RestoreContext context) override;
  kj::Promise<void> attach(AttachContext context) override;
  kj::Promise<void> detach(DetachContext context) override;
  kj::Promise<void> mount(MountContext context) override;
  kj::Promise<void> unmount(UnmountContext context) override;

 private:
  // Answers at once with `status` when the call may not run. Returns true if it answered.
  template <class Context>
  bool refuse(Context& context);

  // Answers at once when the call may not run or `parsed` (the request's own checks)
  // failed; the permission check comes first so a refused peer learns nothing else.
  template <class Context, class T>
  bool rejected(Context& context, const Result<T>& parsed) {
    if (refuse(context)) return true;
    if (!parsed.has_error()) return false;
    set_status(context.getResults().initStatus(), parsed.error());
    return true;
  }

  // Runs work() (returning Result<T>) on the worker; on success fill(results, value).
  template <class Context, class Work, class Fill>
  kj::Promise<void> call(Context context, Work&& work, Fill&& fill);

  Node& node_;
  const kj::Executor& worker_;
  CallGate& gate_;
  const bool allowed_;
};

template <class Context>
bool ControlImpl::refuse(Context& context) {
  if (!allowed_) {
    auto s = context.getResults().initStatus();
    s.setCode(proto::Status::Code::PERMISSION_DENIED);
    s.setMessage("permission denied: the control API is for root and members of group pxd");
    return true;
  }
  if (!gate_.accepting()) {
    auto s = context.getResults().initStatus();
    s.setCode(proto::Status::Code::UNAVAILABLE);
    s.setMessage("pxd is shutting down");
    return true;
  }
  return false;
}

template <class Context, class Work, class Fill>
kj::Promise<void> ControlImpl::call(Context context, Work&& work, Fill&& fill) {
  if (refuse(context)) return kj::READY_NOW;
  gate_.begin_call();
  CallGate* gate = &gate_;
  return worker_.executeAsync(kj::fwd<Work>(work))
      .then([context, fill = kj::fwd<Fill>(fill)](auto&& result) mutable {
        auto results = context.getResults();
        if (result.has_error()) {
          set_status(results.initStatus(), result.error());
          return;
        }
        set_status(results.initStatus(), Status::ok());
        fill(results, result.value());
      })
      .attach(kj::defer([gate] { gate->end_call(); }));
}

}  // namespace pxd::daemon
