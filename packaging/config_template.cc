// pxd-config-template FILE: writes the default /etc/pxd/pxd.conf (every key commented,
// from daemon/config.cc's key list) for the Debian package. A build tool, not installed.
#include <fstream>
#include <iostream>

#include "daemon/config.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: pxd-config-template FILE\n";
    return 2;
  }
  std::ofstream out(argv[1], std::ios::trunc);
  out << pxd::daemon::config_file_template();
  out.close();
  if (!out) {
    std::cerr << "pxd-config-template: cannot write " << argv[1] << "\n";
    return 1;
  }
  return 0;
}
