// tools/nbd-relay/wire.h: the NBD protocol's numbers and big-endian encoding, as far as
// the relay needs them (NetworkBlockDevice/nbd doc/proto.md).
#pragma once

#include <endian.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace pxd::nbdwire {

// Handshake. Values fixed by the protocol: do not change.
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ULL;     // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054ULL;  // "IHAVEOPT"
inline constexpr uint64_t kReplyMagic = 0x0003e889045565a9ULL;
inline constexpr uint16_t kFlagFixedNewstyle = 1, kFlagNoZeroes = 2;
inline constexpr uint32_t kClientFixedNewstyle = 1, kClientNoZeroes = 2;

inline constexpr uint32_t kOptExportName = 1, kOptAbort = 2, kOptList = 3, kOptInfo = 6,
                          kOptGo = 7;
inline constexpr uint32_t kRepAck = 1, kRepServer = 2, kRepInfo = 3;
inline constexpr uint32_t kRepErrorBit = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepErrorBit | 1;
inline constexpr uint16_t kInfoExport = 0, kInfoBlockSize = 3;

inline const char* reply_name(uint32_t type) {
  switch (type) {
    case kRepErrorBit | 1: return "unsupported";
    case kRepErrorBit | 2: return "denied by policy";
    case kRepErrorBit | 3: return "invalid";
    case kRepErrorBit | 4: return "platform error";
    case kRepErrorBit | 6: return "unknown export";
    case kRepErrorBit | 7: return "server shutting down";
    default: return "error";
  }
}

// Transmission.
inline constexpr uint16_t kTransSendDf = 1u << 7, kTransCanMultiConn = 1u << 8;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdDisc = 2, kCmdFlush = 3,
                          kCmdTrim = 4, kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdFlagFua = 1;
inline constexpr uint32_t kErrIo = 5, kErrOverflow = 75, kErrShutdown = 108;

// Appends big-endian fields.
class Writer {
 public:
  Writer& u16(uint16_t v) { return put(htobe16(v)); }
  Writer& u32(uint32_t v) { return put(htobe32(v)); }
  Writer& u64(uint64_t v) { return put(htobe64(v)); }
  Writer& bytes(const std::string& s) {
    buf_ += s;
    return *this;
  }
  const char* data() const { return buf_.data(); }
  size_t size() const { return buf_.size(); }
  const std::string& str() const { return buf_; }

 private:
  template <class T>
  Writer& put(T v) {
    buf_.append(reinterpret_cast<const char*>(&v), sizeof(v));
    return *this;
  }
  std::string buf_;
};

// Reads big-endian fields; reading past the end yields zeros (callers check lengths).
class Reader {
 public:
  Reader(const char* data, size_t size) : p_(data), left_(size) {}
  uint16_t u16() { return be16toh(get<uint16_t>()); }
  uint32_t u32() { return be32toh(get<uint32_t>()); }
  uint64_t u64() { return be64toh(get<uint64_t>()); }

 private:
  template <class T>
  T get() {
    T v{};
    if (left_ >= sizeof(T)) {
      std::memcpy(&v, p_, sizeof(T));
      p_ += sizeof(T);
      left_ -= sizeof(T);
    } else {
      left_ = 0;
    }
    return v;
  }
  const char* p_;
  size_t left_;
};

}  // namespace pxd::nbdwire
