@0x94f62eb1157a5a06;
# pxd control API: spoken by pxctl, the Docker plugin and other clients to pxd over the
# unix socket /run/pxd/pxd.sock (root or group pxd). One bootstrap capability, Control.
#
# Every method returns a Status. On any code but `ok` the other results are unset and
# nothing was changed. Compatibility: fields and methods are only ever added, with new
# ordinals; clients call hello() first and refuse a server whose apiVersion they do not
# know. See doc/control-api.md.

$import "/capnp/c++.capnp".namespace("pxd::proto");

const apiVersion :UInt32 = 1;

struct Status {
  code @0 :Code;
  message @1 :Text;

  # Persisted in no file but part of the protocol: do not change these values.
  enum Code {
    ok @0;
    invalidArgument @1;     # the request is malformed or out of range
    notFound @2;            # a named volume, snapshot or pool does not exist
    alreadyExists @3;       # the name is taken by something with a different spec
    failedPrecondition @4;  # the object's state forbids it (snapshots exist, attached, ...)
    noSpace @5;             # the pool is full
    ioError @6;             # a device or the metadata store failed
    corruption @7;          # persisted state failed a check
    unsupported @8;         # valid, but this node cannot do it (e.g. replication without a cluster)
    busy @9;                # in use (open, attached, mounted)
    internal @10;           # a bug in pxd
    permissionDenied @11;   # the caller is not root or in group pxd
    unavailable @12;        # pxd is shutting down
  }
}

struct Label {
  key @0 :Text;
  value @1 :Text;
}

struct VolumeSpec {
  name @0 :Text;
  sizeBytes @1 :UInt64;
  blockSize @2 :UInt32;        # 4096 or 512; 0 means 4096
  fs @3 :Text;                 # "ext4" (default when empty), "xfs" or "none"
  labels @4 :List(Label);
  replicas @5 :UInt32;         # 0 or 1 on a node without a cluster
}

struct Volume {
  id @0 :UInt64;
  name @1 :Text;
  isSnapshot @2 :Bool;
  sizeBytes @3 :UInt64;
  blockSize @4 :UInt32;
  fs @5 :Text;
  labels @6 :List(Label);
  parent @7 :Text;             # snapshot: its volume; clone: its origin; else ""
  snapshots @8 :List(Text);    # volume: its snapshots, oldest first
  exclusiveBytes @9 :UInt64;
  sharedBytes @10 :UInt64;
  devicePath @11 :Text;        # "" when not attached
  state @12 :Text;             # "detached", "attached", "mounted"
  createdUnix @13 :Int64;
  replicas @14 :UInt32;
  pool @15 :Text;
  mounts @16 :List(Text);      # paths where pxd mounted it on this host
  frontend @17 :Text;          # "nbd-loop" or "ublk" while attached
  attachError @18 :Text;       # why a restart could not re-establish its attachment
  deviceSizeBytes @19 :UInt64; # size the attached device shows (0 when detached); below
                               # sizeBytes after a grow it could not see online: the
                               # device shows the new size after a detach and attach
}

struct Pool {
  name @0 :Text;
  uuid @1 :Text;
  chunkSize @2 :UInt32;
  capacityBytes @3 :UInt64;
  usedBytes @4 :UInt64;
  freeBytes @5 :UInt64;
  reclaimingBytes @6 :UInt64;
  metadataBytes @7 :UInt64;
  devices @8 :List(Text);
  volumes @9 :UInt32;
  snapshots @10 :UInt32;
}

struct NodeStatus {
  nodeName @0 :Text;
  version @1 :Text;
  apiVersion @2 :UInt32;
  labels @3 :List(Label);
  uptimeSeconds @4 :UInt64;
  dataDir @5 :Text;
  cluster @6 :Text;            # "none (single node)" until a cluster exists
  frontend @7 :Text;           # block device frontend attach would use
  pools @8 :List(Pool);
  volumes @9 :UInt32;
  snapshots @10 :UInt32;
  nbdSocket @11 :Text;         # pxd's NBD unix socket ("" when disabled)
  dockerPluginSocket @12 :Text;  # the Docker volume plugin's socket ("" when disabled)
}

interface Control {
  # Version handshake: the server answers with its own versions.
  hello @0 (clientApiVersion :UInt32, clientVersion :Text)
      -> (status :Status, apiVersion :UInt32, version :Text);

  status @1 () -> (status :Status, node :NodeStatus);
  listPools @2 () -> (status :Status, pools :List(Pool));

  # Idempotent by name: the same spec returns the existing volume; a different spec is
  # alreadyExists with a message saying what differs.
  createVolume @3 (spec :VolumeSpec) -> (status :Status, volume :Volume);
  # Volumes (and snapshots when includeSnapshots) whose labels include every selector label.
  listVolumes @4 (selector :List(Label), includeSnapshots :Bool)
      -> (status :Status, volumes :List(Volume));
  inspectVolume @5 (name :Text) -> (status :Status, volume :Volume);
  # sizeBytes 0 leaves the size. setLabels replaces the labels with `labels`; mergeLabels
  # instead sets `labels` and removes the keys in `removeLabels`, keeping the others, in
  # one atomic step.
  updateVolume @6 (name :Text, sizeBytes :UInt64, setLabels :Bool, labels :List(Label),
                   mergeLabels :Bool, removeLabels :List(Text))
      -> (status :Status, volume :Volume);
  # Refused while attached or mounted unless force.
  deleteVolume @7 (name :Text, force :Bool) -> (status :Status);

  createSnapshot @8 (volume :Text, name :Text, labels :List(Label))
      -> (status :Status, snapshot :Volume);
  # All snapshots, or those of one volume when `volume` is not empty.
  listSnapshots @9 (volume :Text) -> (status :Status, snapshots :List(Volume));
  deleteSnapshot @10 (name :Text) -> (status :Status);
  clone @11 (source :Text, name :Text, labels :List(Label)) -> (status :Status, volume :Volume);
  restore @12 (volume :Text, snapshot :Text) -> (status :Status, volume :Volume);

  # Host attachment (/dev/pxd<ID>) and mounts. Attach is idempotent; detach is refused
  # while mounted unless forced; mount makes the volume's filesystem on first use only and
  # counts mounts per path; unmount undoes one, and detaches when the mount attached it.
  attach @13 (name :Text) -> (status :Status, volume :Volume);
  detach @14 (name :Text, force :Bool) -> (status :Status, volume :Volume);
  mount @15 (name :Text, path :Text) -> (status :Status, volume :Volume, madeFs :Bool);
  unmount @16 (name :Text, path :Text) -> (status :Status, volume :Volume);
}
