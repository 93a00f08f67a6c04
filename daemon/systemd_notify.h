// daemon/systemd_notify.h: telling systemd what pxd is doing (sd_notify).
//
// All calls are no-ops when pxd was not started by systemd (no NOTIFY_SOCKET).
#pragma once

#include <cstdint>
#include <string>

namespace pxd::daemon {

void notify_status(const std::string& text);   // STATUS=...
void notify_ready(const std::string& status);  // READY=1 and STATUS=...
void notify_stopping();                        // STOPPING=1
void notify_watchdog();                        // WATCHDOG=1
// EXTEND_TIMEOUT_USEC=: the start (or stop) may take this much longer from now.
void notify_extend_timeout(uint64_t usec);
// The watchdog interval systemd expects pings within, in microseconds; 0 if none.
uint64_t watchdog_usec();

}  // namespace pxd::daemon
