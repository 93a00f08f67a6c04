#include "common/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>

#include "common/peer_credentials.h"

namespace pxd {

Status prepare_socket_path(const std::string& path, std::string_view what) {
  const std::string name(what);
  if (path.empty() || path[0] != '/')
    return invalid_argument(name + " '" + path + "' must be an absolute path");
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return invalid_argument(name + " path '" + path + "' is longer than " +
                            std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  std::optional<gid_t> group = pxd_group();
  std::string dir = path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    // A directory pxd makes gets the socket's access rule.
    if (::mkdir(dir.c_str(), group ? 0750 : 0700) != 0 && errno != EEXIST)
      return errno_status(errno, "create " + dir);
    if (group && ::chown(dir.c_str(), 0, *group) != 0 && ::geteuid() == 0)
      return errno_status(errno, "chown " + dir);
  }
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return failed_precondition(path + " exists and is not a socket");
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno_status(errno, "socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (live) return busy("another process is serving the " + name + " " + path);
    ::unlink(path.c_str());  // left by a process that died
  }
  return Status::ok();
}

Status restrict_socket(const std::string& path) {
  std::optional<gid_t> group = pxd_group();
  if (::chmod(path.c_str(), group ? 0660 : 0600) != 0) return errno_status(errno, "chmod " + path);
  if (group && ::chown(path.c_str(), 0, *group) != 0 && ::geteuid() == 0)
    return errno_status(errno, "chown " + path);
  return Status::ok();
}

}  // namespace pxd
