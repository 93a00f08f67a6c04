// daemon/convert.h: between the control API's Cap'n Proto types and the Node's.
//
// Incoming values are checked here (label counts and lengths, block size) so that a
// malformed request is refused before it reaches the Node.
#pragma once

#include "common/status.h"
#include "daemon/node.h"
#include "proto/control.capnp.h"

namespace pxd::daemon {

inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxLabelBytes = 255;

void set_status(proto::Status::Builder out, const Status& status);
proto::Status::Code to_proto_code(StatusCode code);

Result<Labels> labels_from(capnp::List<proto::Label>::Reader list);
void set_labels(capnp::List<proto::Label>::Builder out, const Labels& labels);
template <class B>
void init_labels(B&& init, const Labels& labels) {
  set_labels(init(static_cast<unsigned>(labels.size())), labels);
}

Result<CreateRequest> create_request_from(proto::VolumeSpec::Reader spec);
void set_volume(proto::Volume::Builder out, const VolumeView& v);
void set_pool(proto::Pool::Builder out, const PoolUsage& u);

}  // namespace pxd::daemon
