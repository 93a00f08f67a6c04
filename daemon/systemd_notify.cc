#include "daemon/systemd_notify.h"

#include <systemd/sd-daemon.h>

namespace pxd::daemon {

void notify_status(const std::string& text) {
  sd_notify(0, ("STATUS=" + text).c_str());
}
void notify_ready(const std::string& status) {
  sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
}
void notify_stopping() {
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}
void notify_watchdog() {
  sd_notify(0, "WATCHDOG=1");
}
void notify_extend_timeout(uint64_t usec) {
  sd_notify(0, ("EXTEND_TIMEOUT_USEC=" + std::to_string(usec)).c_str());
}

uint64_t watchdog_usec() {
  uint64_t usec = 0;
  return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

}  // namespace pxd::daemon
