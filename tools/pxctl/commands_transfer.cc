// pxctl volume import | export: whole volumes in from and out to files and NBD servers,
// sparse in both directions (see transfer.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/units.h"
#include "tools/pxctl/args.h"
#include "tools/pxctl/commands.h"
#include "tools/pxctl/transfer.h"

namespace pxd::pxctl {
namespace {

// Marks a volume whose import has not finished. A later import of the same name replaces
// such a volume; a finished import removes the label.
constexpr char kImportLabel[] = "pxd.import";
constexpr char kImportIncomplete[] = "incomplete";

std::string nbd_socket_of(Session& s) {
  auto request = s.client().control().statusRequest();
  auto response = s.client().call(request);
  std::string socket = response.getNode().getNbdSocket().cStr();
  if (socket.empty())
    throw CommandError(kExitFailed,
                       "pxd's NBD socket is disabled (nbd_socket); import and export need it");
  return socket;
}

// Removes the volume an import made. The copy that wrote it has just been stopped, and pxd
// lets its NBD connection go only once it sees the socket close: while the volume is still
// open (busy), try again for a while.
void delete_volume(Session& s, const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto request = s.client().control().deleteVolumeRequest();
    request.setName(name);
    request.setForce(true);
    try {
      s.client().call(request);
      return;
    } catch (const CommandError& e) {
      if (e.exit_code() != kExitConflict || std::chrono::steady_clock::now() > deadline) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Makes way for importing `name`: removes an earlier import of it that never finished
// (returns true), and refuses if a finished volume or a snapshot has the name.
bool remove_incomplete_import(Session& s, const std::string& name) {
  auto request = s.client().control().inspectVolumeRequest();
  request.setName(name);
  bool exists = true;
  bool incomplete = false;
  try {
    auto response = s.client().call(request);
    for (auto label : response.getVolume().getLabels())
      incomplete |= std::string(label.getKey().cStr()) == kImportLabel &&
                    std::string(label.getValue().cStr()) == kImportIncomplete;
  } catch (const CommandError& e) {
    if (e.exit_code() != kExitNotFound) throw;
    exists = false;
  }
  if (!exists) return false;
  if (!incomplete) throw CommandError(kExitConflict, "'" + name + "' already exists");
  delete_volume(s, name);
  return true;
}

void add_import(CLI::App& volume, Action* action) {
  struct Options {
    std::string name, from, size, fs = "ext4";
    uint32_t block_size = 4096;
    std::vector<std::string> labels;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand(
      "import", "Create a volume from a raw or qcow2 file, a block device or an NBD URI");
  cmd->add_option("name", o->name, "Name of the new volume")->required();
  cmd->add_option("--from", o->from, "FILE, DEVICE or nbd://... / nbd+unix://... URI")
      ->required()
      ->type_name("FILE|URI");
  cmd->add_option("-s,--size", o->size, "Volume size (default: the source's, rounded up)")
      ->check(size_validator());
  cmd->add_option("--fs", o->fs, "Filesystem recorded for the volume (ext4, xfs, none)")
      ->check(CLI::IsMember({"ext4", "xfs", "none"}));
  cmd->add_option("-b,--block_size,--block-size", o->block_size, "Block size in bytes")
      ->check(CLI::IsMember({512, 4096}));
  add_label_option(*cmd, o->labels, "Labels k=v,k2=v2 (repeatable)");
  cmd->callback([o, action] {
    auto parsed = parse_labels(o->labels);
    if (parsed.has_error()) throw CLI::ValidationError("--label", parsed.error().message());
    Labels labels = std::move(parsed).value();
    uint64_t wanted = 0;
    if (!o->size.empty()) wanted = parse_size_flag(o->size).value();
    *action = [o, labels, wanted](Session& s) {
      Endpoint source = source_endpoint(o->from);
      const uint64_t source_bytes = source_size(source);
      uint64_t size = wanted != 0 ? wanted : align_up(source_bytes, o->block_size);
      if (size == 0) throw CommandError(kExitUsage, "'" + o->from + "' is empty");
      if (size < source_bytes)
        throw CommandError(kExitUsage, "--size " + format_size(size) + " is smaller than '" +
                                           o->from + "' (" + format_size(source_bytes) + ")");
      const std::string socket = nbd_socket_of(s);
      bool replaced = remove_incomplete_import(s, o->name);

      auto create = s.client().control().createVolumeRequest();
      auto spec = create.initSpec();
      spec.setName(o->name);
      spec.setSizeBytes(size);
      spec.setBlockSize(o->block_size);
      spec.setFs(o->fs);
      Labels with_marker = labels;
      with_marker.emplace_back(kImportLabel, kImportIncomplete);
      fill_labels(spec.initLabels(static_cast<unsigned>(with_marker.size())), with_marker);
      s.client().call(create);

      Endpoint destination;
      destination.text = o->name;
      destination.args = {pxd_export_uri(socket, o->name)};
      CopyOptions copy;
      copy.size = source_bytes;
      copy.destination_is_zero = true;  // a new thin volume reads as zeros
      copy.progress = !s.json() && ::isatty(2);
      try {
        run_copy(source, destination, copy);
      } catch (const CommandError& e) {
        delete_volume(s, o->name);
        throw CommandError(e.exit_code(),
                           std::string(e.what()) + "; volume '" + o->name + "' was removed");
      }
      auto finish = s.client().control().updateVolumeRequest();
      finish.setName(o->name);
      finish.setMergeLabels(true);
      finish.initLabels(0);
      finish.initRemoveLabels(1).set(0, kImportLabel);
      auto response = s.client().call(finish);
      auto v = response.getVolume();
      if (s.json()) return s.print_json(volume_json(v));
      s.print("Volume imported: " + o->name + " (id " + std::to_string(v.getId()) + ", " +
              format_size(v.getSizeBytes()) + ", " +
              format_size(v.getExclusiveBytes() + v.getSharedBytes()) + " allocated)" +
              (replaced ? ", replacing an unfinished import" : "") + "\n");
    };
  });
}

void add_export(CLI::App& volume, Action* action) {
  struct Options {
    std::string name, to;
    bool overwrite = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = volume.add_subcommand(
      "export", "Copy a volume or snapshot to a sparse file, a block device or an NBD URI");
  cmd->add_option("name", o->name, "Volume or snapshot (a snapshot gives a consistent copy)")
      ->required();
  cmd->add_option("--to", o->to, "FILE, DEVICE or nbd://... / nbd+unix://... URI")
      ->required()
      ->type_name("FILE|URI");
  cmd->add_flag("--overwrite", o->overwrite, "Replace an existing file");
  cmd->callback([o, action] {
    *action = [o](Session& s) {
      auto inspect = s.client().control().inspectVolumeRequest();
      inspect.setName(o->name);
      auto found = s.client().call(inspect);
      const uint64_t size = found.getVolume().getSizeBytes();
      const std::string socket = nbd_socket_of(s);
      Endpoint source;
      source.text = o->name;
      source.args = {pxd_export_uri(socket, o->name)};

      Endpoint destination;
      destination.text = o->to;
      CopyOptions copy;
      copy.size = size;
      copy.progress = !s.json() && ::isatty(2);
      bool created = false;
      if (is_nbd_uri(o->to)) {
        destination.args = {o->to};
      } else {
        struct stat st;
        bool exists = ::stat(o->to.c_str(), &st) == 0;
        if (exists && S_ISREG(st.st_mode) && !o->overwrite)
          throw CommandError(kExitConflict,
                             "'" + o->to + "' exists; use --overwrite to replace it");
        if (!exists || S_ISREG(st.st_mode)) {
          // A fresh sparse file of the right size: holes stay holes.
          int fd = ::open(o->to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
          if (fd < 0)
            throw CommandError(kExitUsage,
                               "cannot create '" + o->to + "': " + std::strerror(errno));
          int rc = ::ftruncate(fd, static_cast<off_t>(size));
          int err = errno;
          ::close(fd);
          if (rc != 0) {
            ::unlink(o->to.c_str());
            throw CommandError(kExitFailed, "cannot size '" + o->to + "': " + std::strerror(err));
          }
          created = true;
          copy.destination_is_zero = true;
        }
        destination.args = {o->to};
        destination.is_file = true;
      }
      try {
        run_copy(source, destination, copy);
      } catch (const CommandError& e) {
        if (created) ::unlink(o->to.c_str());
        throw CommandError(e.exit_code(), std::string(e.what()) +
                                              (created ? "; '" + o->to + "' was removed" : ""));
      }
      if (s.json()) return s.print_json(Json{{"name", o->name}, {"to", o->to}, {"size", size}});
      s.print("Exported: " + o->name + " to " + o->to + " (" + format_size(size) + ")\n");
    };
  });
}

}  // namespace

void add_transfer_commands(CLI::App& volume, Action* action) {
  add_import(volume, action);
  add_export(volume, action);
}

}  // namespace pxd::pxctl
