// tests/unit/nbd/nbd_client.h: a libnbd handle that closes itself, and checks.
#pragma once

#include <doctest/doctest.h>
#include <libnbd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

namespace pxd::testing {

// One connection. Aborts the test case if it cannot connect (unless `expect_failure`).
class NbdClient {
 public:
  // `configure` runs on the handle before it connects.
  template <class Configure>
  NbdClient(const std::string& uri, Configure configure) : h_(nbd_create()) {
    REQUIRE(h_ != nullptr);
    configure(h_);
    connected_ = nbd_connect_uri(h_, uri.c_str()) == 0;
    if (!connected_) error_ = nbd_get_error() ? nbd_get_error() : "";
  }
  explicit NbdClient(const std::string& uri) : NbdClient(uri, [](nbd_handle*) {}) {}
  ~NbdClient() {
    if (h_) {
      if (connected_) nbd_shutdown(h_, 0);
      nbd_close(h_);
    }
  }
  NbdClient(const NbdClient&) = delete;
  NbdClient& operator=(const NbdClient&) = delete;

  nbd_handle* h() { return h_; }
  bool connected() const { return connected_; }
  const std::string& connect_error() const { return error_; }
  // libnbd's message for the last failed call.
  const std::string& last_error() const { return last_error_; }

  // 0 on success, else the errno libnbd reports.
  int pread(std::vector<uint8_t>& buf, uint64_t offset, uint32_t flags = 0) {
    return check(nbd_pread(h_, buf.data(), buf.size(), offset, flags));
  }
  int pwrite(const std::vector<uint8_t>& buf, uint64_t offset, uint32_t flags = 0) {
    return check(nbd_pwrite(h_, buf.data(), buf.size(), offset, flags));
  }
  int flush() { return check(nbd_flush(h_, 0)); }
  int trim(uint64_t length, uint64_t offset, uint32_t flags = 0) {
    return check(nbd_trim(h_, length, offset, flags));
  }
  int zero(uint64_t length, uint64_t offset, uint32_t flags = 0) {
    return check(nbd_zero(h_, length, offset, flags));
  }
  std::vector<uint8_t> read(uint64_t offset, size_t length) {
    std::vector<uint8_t> buf(length, 0xEE);
    REQUIRE_MESSAGE(pread(buf, offset) == 0, nbd_get_error());
    return buf;
  }

  struct Extent {
    uint64_t length;
    uint32_t flags;
  };
  // base:allocation extents from one BLOCK_STATUS, or errno in *err.
  std::vector<Extent> block_status(uint64_t length, uint64_t offset, uint32_t flags = 0,
                                   int* err = nullptr) {
    std::vector<Extent> out;
    nbd_extent_callback cb = {
        [](void* user, const char* context, uint64_t, uint32_t* entries, size_t n, int*) {
          auto* v = static_cast<std::vector<Extent>*>(user);
          if (std::string(context) != LIBNBD_CONTEXT_BASE_ALLOCATION) return 0;
          for (size_t i = 0; i + 1 < n; i += 2) v->push_back({entries[i], entries[i + 1]});
          return 0;
        },
        &out, nullptr};
    int rc = check(nbd_block_status(h_, length, offset, cb, flags));
    if (err) *err = rc;
    return out;
  }

 private:
  int check(int rc) {
    if (rc == 0) return 0;
    last_error_ = nbd_get_error() ? nbd_get_error() : "";
    int e = nbd_get_errno();
    return e ? e : -1;
  }

  nbd_handle* h_;
  bool connected_ = false;
  std::string error_;
  std::string last_error_;
};

inline std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 12));
  return v;
}

}  // namespace pxd::testing
