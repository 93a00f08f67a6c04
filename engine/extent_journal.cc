#include "engine/extent_journal.h"

#include <endian.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace pxd {
namespace {

constexpr size_t kHashedBytes = 40;  // sequence, tree, chunk_index, pool_chunk, birth, reserved
constexpr size_t kHashOffset = 40;
static_assert(crypto_shorthash_KEYBYTES == 16 && crypto_shorthash_BYTES == 8);

void put64(uint8_t* p, uint64_t v) {
  v = htole64(v);
  std::memcpy(p, &v, sizeof v);
}
void put32(uint8_t* p, uint32_t v) {
  v = htole32(v);
  std::memcpy(p, &v, sizeof v);
}
uint64_t get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return le64toh(v);
}
uint32_t get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return le32toh(v);
}

void encode(const JournalRecord& r, const ExtentJournal::Key& key, uint8_t* slot) {
  put64(slot + 0, r.sequence);
  put64(slot + 8, r.tree);
  put64(slot + 16, r.chunk_index);
  put64(slot + 24, r.pool_chunk);
  put32(slot + 32, r.birth);
  put32(slot + 36, 0);
  crypto_shorthash(slot + kHashOffset, slot, kHashedBytes, key.data());
  std::memset(slot + kHashOffset + 8, 0, ExtentJournal::kSlotBytes - kHashOffset - 8);
}

// False for an empty slot, a record of another key, and a torn or corrupt one.
bool decode(const uint8_t* slot, const ExtentJournal::Key& key, JournalRecord* r) {
  uint8_t hash[crypto_shorthash_BYTES];
  crypto_shorthash(hash, slot, kHashedBytes, key.data());
  if (sodium_memcmp(hash, slot + kHashOffset, sizeof hash) != 0) return false;
  if (get32(slot + 36) != 0) return false;
  r->sequence = get64(slot + 0);
  r->tree = get64(slot + 8);
  r->chunk_index = get64(slot + 16);
  r->pool_chunk = get64(slot + 24);
  r->birth = get32(slot + 32);
  return r->sequence != 0;
}

// Whether `fd` is a regular file of this process's user: a file someone else made in a
// shared directory such as /dev/shm is neither trusted nor written.
Status check_owner(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno_status(errno, "stat extent journal " + path);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid())
    return failed_precondition("extent journal " + path +
                               " is not a regular file owned by this process's user");
  return Status::ok();
}

}  // namespace

std::string ExtentJournal::path_in(const std::string& dir, const std::string& pool_uuid) {
  return dir + "/pxd-extent-journal-" + pool_uuid;
}

void ExtentJournal::remove(const std::string& path) {
  ::unlink(path.c_str());
}

ExtentJournal::Key ExtentJournal::new_key() {
  Key key;
  size_t got = 0;
  while (got < key.size()) {
    ssize_t n = ::getrandom(key.data() + got, key.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return key;
}

Result<std::vector<JournalRecord>> ExtentJournal::read(const std::string& path, const Key& key) {
  std::vector<JournalRecord> out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return out;
    return errno_status(errno, "open extent journal " + path);
  }
  if (Status owner = check_owner(fd, path); !owner.is_ok()) {
    ::close(fd);
    PXD_LOG(kWarn) << "ignoring " << owner;
    return out;
  }
  std::vector<uint8_t> slot(kSlotBytes);
  uint64_t offset = 0;
  Status status;
  for (;;) {
    ssize_t n = ::pread(fd, slot.data(), kSlotBytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = errno_status(errno, "read extent journal " + path);
      break;
    }
    if (static_cast<size_t>(n) < kSlotBytes) break;  // the end (a short tail is no record)
    JournalRecord r;
    if (decode(slot.data(), key, &r)) out.push_back(r);
    offset += kSlotBytes;
  }
  ::close(fd);
  if (!status.is_ok()) return status;
  return out;
}

Result<std::unique_ptr<ExtentJournal>> ExtentJournal::create(const std::string& path,
                                                             uint32_t capacity, const Key& key) {
  if (sodium_init() < 0) return internal_error("libsodium failed to initialize");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return errno_status(errno, "create extent journal " + path);
  if (Status owner = check_owner(fd, path); !owner.is_ok()) {
    ::close(fd);
    return owner;
  }
  (void)::fchmod(fd, 0600);
  const off_t bytes = static_cast<off_t>(capacity) * kSlotBytes;
  // Emptied first: a record of an earlier open must not survive in a slot this one has not
  // written yet (its key would not authenticate it, but there is no need to keep it).
  int err = 0;
  if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, bytes) != 0) err = errno;
  // Allocated now, so that the first touch of a page on the I/O path allocates nothing.
  if (err == 0) {
    int rc = ::posix_fallocate(fd, 0, bytes);
    if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) err = rc;
  }
  void* map = MAP_FAILED;
  if (err == 0) {
    map = ::mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) err = errno;
  }
  ::close(fd);
  if (err != 0) return errno_status(err, "set up extent journal " + path);
  return std::unique_ptr<ExtentJournal>(
      new ExtentJournal(path, static_cast<uint8_t*>(map), capacity, key));
}

ExtentJournal::~ExtentJournal() {
  ::munmap(map_, static_cast<size_t>(capacity_) * kSlotBytes);
}

void ExtentJournal::write(uint64_t index, const JournalRecord& record) {
  uint8_t slot[kSlotBytes];
  encode(record, key_, slot);
  std::memcpy(map_ + (index % capacity_) * kSlotBytes, slot, kSlotBytes);
}

}  // namespace pxd
