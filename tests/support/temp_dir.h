// tests/support/temp_dir.h: a private directory per test, removed with everything in it.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace pxd::testing {

class TempDir {
 public:
  TempDir() {
    // /var/tmp rather than /tmp: tmpfs /tmp may lack what the engine needs (O_DIRECT on
    // old kernels), and the guest-kernel tests hide /tmp.
    const char* base = std::getenv("PXD_TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/var/tmp") + "/pxd-test-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace pxd::testing
