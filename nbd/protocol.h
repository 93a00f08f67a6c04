// nbd/protocol.h: the NBD protocol's numbers and big-endian encoding.
//
// Values are fixed by the protocol (NetworkBlockDevice/nbd doc/proto.md): do not change
// them. Header-only and free of pxd dependencies, so clients (tests, tools) can use it
// without linking the server.
#pragma once

#include <endian.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace pxd::nbd::proto {

// ---- Handshake ----
inline constexpr uint64_t kInitMagic = 0x4e42444d41474943ULL;    // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054ULL;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9ULL;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientNoZeroes = 1u << 1;

// Options.
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;

// Option replies.
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepErrorBit = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepErrorBit | 1;
inline constexpr uint32_t kRepErrPolicy = kRepErrorBit | 2;
inline constexpr uint32_t kRepErrInvalid = kRepErrorBit | 3;
inline constexpr uint32_t kRepErrPlatform = kRepErrorBit | 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepErrorBit | 5;
inline constexpr uint32_t kRepErrUnknown = kRepErrorBit | 6;
inline constexpr uint32_t kRepErrShutdown = kRepErrorBit | 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepErrorBit | 8;
inline constexpr uint32_t kRepErrTooBig = kRepErrorBit | 9;

// NBD_OPT_INFO / NBD_OPT_GO information types.
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// Transmission flags.
inline constexpr uint16_t kTransHasFlags = 1u << 0;
inline constexpr uint16_t kTransReadOnly = 1u << 1;
inline constexpr uint16_t kTransSendFlush = 1u << 2;
inline constexpr uint16_t kTransSendFua = 1u << 3;
inline constexpr uint16_t kTransRotational = 1u << 4;
inline constexpr uint16_t kTransSendTrim = 1u << 5;
inline constexpr uint16_t kTransSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kTransSendDf = 1u << 7;
inline constexpr uint16_t kTransCanMultiConn = 1u << 8;

// The metadata context this server offers.
inline constexpr std::string_view kContextBaseAllocation = "base:allocation";
inline constexpr uint32_t kStateHole = 1u << 0;
inline constexpr uint32_t kStateZero = 1u << 1;

// ---- Transmission ----
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr size_t kRequestHeaderBytes = 28;
inline constexpr size_t kSimpleReplyHeaderBytes = 16;
inline constexpr size_t kStructuredReplyHeaderBytes = 20;

// Commands.
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;

// Command flags.
inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// Structured reply flags and chunk types.
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = (1u << 15) | 1;
inline constexpr uint16_t kReplyTypeErrorOffset = (1u << 15) | 2;

// Error values on the wire (the protocol's, which happen to be Linux errno numbers).
inline constexpr uint32_t kEperm = 1;
inline constexpr uint32_t kEio = 5;
inline constexpr uint32_t kEnomem = 12;
inline constexpr uint32_t kEinval = 22;
inline constexpr uint32_t kEnospc = 28;
inline constexpr uint32_t kEoverflow = 75;
inline constexpr uint32_t kEnotsup = 95;
inline constexpr uint32_t kEshutdown = 108;

// ---- Encoding ----

inline void put16(std::byte* p, uint16_t v) {
  v = htobe16(v);
  std::memcpy(p, &v, 2);
}
inline void put32(std::byte* p, uint32_t v) {
  v = htobe32(v);
  std::memcpy(p, &v, 4);
}
inline void put64(std::byte* p, uint64_t v) {
  v = htobe64(v);
  std::memcpy(p, &v, 8);
}
inline uint16_t get16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return be16toh(v);
}
inline uint32_t get32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return be32toh(v);
}
inline uint64_t get64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return be64toh(v);
}

// Appends big-endian fields to a byte string (handshake messages, tests' clients).
class Writer {
 public:
  Writer& u16(uint16_t v) { return put(htobe16(v)); }
  Writer& u32(uint32_t v) { return put(htobe32(v)); }
  Writer& u64(uint64_t v) { return put(htobe64(v)); }
  Writer& bytes(std::string_view s) {
    buf_.append(s);
    return *this;
  }
  const std::string& str() const { return buf_; }
  size_t size() const { return buf_.size(); }

 private:
  template <class T>
  Writer& put(T v) {
    buf_.append(reinterpret_cast<const char*>(&v), sizeof(v));
    return *this;
  }
  std::string buf_;
};

// Reads big-endian fields from a byte string; ok() turns false once a read runs past the
// end (the reads that did so return zero).
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  uint16_t u16() { return be16toh(get<uint16_t>()); }
  uint32_t u32() { return be32toh(get<uint32_t>()); }
  uint64_t u64() { return be64toh(get<uint64_t>()); }
  std::string bytes(size_t n) {
    if (n > data_.size() - pos_) {
      ok_ = false;
      pos_ = data_.size();
      return {};
    }
    std::string out(data_.substr(pos_, n));
    pos_ += n;
    return out;
  }
  bool ok() const { return ok_; }
  size_t left() const { return data_.size() - pos_; }

 private:
  template <class T>
  T get() {
    T v{};
    if (sizeof(T) > data_.size() - pos_) {
      ok_ = false;
      pos_ = data_.size();
      return v;
    }
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace pxd::nbd::proto
