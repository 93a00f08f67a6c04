#include "common/peer_credentials.h"

#include <grp.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace pxd {

std::optional<gid_t> pxd_group() {
  struct group grp;
  struct group* found = nullptr;
  char buf[4096];
  if (getgrnam_r("pxd", &grp, buf, sizeof(buf), &found) == 0 && found) return found->gr_gid;
  return std::nullopt;
}

Result<ucred> peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return errno_status(errno, "SO_PEERCRED");
  return cred;
}

bool peer_allowed(const ucred& cred) {
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  std::optional<gid_t> group = pxd_group();
  if (!group) return false;
  if (cred.gid == *group) return true;
  // Supplementary groups of the connecting process.
  std::ifstream status("/proc/" + std::to_string(cred.pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream groups(line.substr(7));
    unsigned long g;
    while (groups >> g) {
      if (g == *group) return true;
    }
  }
  return false;
}

std::string describe_peer(const ucred& cred) {
  return "pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid);
}

}  // namespace pxd
