// Binary state serialization: a little-endian byte Writer and a bounds-checked
// Reader, organised in tagged, versioned, length-prefixed sections, plus CRC-32.
//
// Section layout (20-byte header, then the payload):
//
//   offset  size  field
//   0       4     tag      four ASCII characters, e.g. "BOOK"
//   4       2     major    u16: a layout change old readers cannot read
//   6       2     minor    u16: fields appended at the end of the payload
//   8       4     flags    u32: bit 0 = required (a reader that does not know the
//                          tag must refuse the snapshot rather than skip it)
//   12      8     length   u64: payload bytes that follow
//
// Compatibility rules, applied by every reader of sections:
//  * unknown tag, not required -> skipped (a newer minor version added state we
//    can do without); unknown tag, required -> SnapshotError;
//  * known tag, major newer than the reader's -> SnapshotError;
//  * known tag, minor newer -> the reader reads the fields it knows and ignores
//    the rest of the payload (new fields are only ever appended);
//  * known tag, minor older -> the reader gives the fields the old writer did
//    not have their defaults (Reader::done() tells where the payload ends).
//
// The Reader never reads past its buffer, never allocates more than the bytes
// left could hold, and reports every violation as SnapshotError: a corrupt or
// truncated snapshot is an error, never undefined behaviour.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace heatcore::serial {

// A snapshot that cannot be read: corrupt, truncated, from a newer format, or
// inconsistent with itself. The message says which and where.
class SnapshotError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum zlib and
// PNG use. `crc` chains calls: crc32(b, nb, crc32(a, na)) == crc32(a + b).
std::uint32_t crc32(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;

// Four-character section tag as a little-endian u32 ("BOOK" -> bytes B,O,O,K).
constexpr std::uint32_t tag(const char (&s)[5]) noexcept {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(s[0])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(s[3])) << 24;
}
std::string tag_name(std::uint32_t t);

inline constexpr std::uint32_t kSectionRequired = 1;
inline constexpr std::size_t kSectionHeaderSize = 20;

class Writer {
 public:
  // An open section; its length is patched in when it goes out of scope.
  class Section {
   public:
    Section(Writer& w, std::size_t length_at) noexcept : w_(&w), at_(length_at) {}
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
    Section(Section&& o) noexcept : w_(o.w_), at_(o.at_) { o.w_ = nullptr; }
    Section& operator=(Section&&) = delete;
    ~Section() { close(); }
    void close() noexcept;

   private:
    Writer* w_;
    std::size_t at_;
  };

  Section section(std::uint32_t tag, std::uint16_t major, std::uint16_t minor, bool required);

  void u8(std::uint8_t v) { buf_.push_back(v); }
  void u16(std::uint16_t v) { raw_le(v, 2); }
  void u32(std::uint32_t v) { raw_le(v, 4); }
  void u64(std::uint64_t v) { raw_le(v, 8); }
  void i8(std::int8_t v) { u8(static_cast<std::uint8_t>(v)); }
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v);                       // IEEE-754 bits, exact
  void boolean(bool v) { u8(v ? 1 : 0); }
  void str(const std::string& s);           // u32 length + bytes
  void f64s(const std::vector<double>& v);  // u64 count + values
  void f64_span(const double* v, std::size_t n);  // values only (count written by the caller)
  void i64s(const std::vector<std::int64_t>& v);
  void u64s(const std::vector<std::uint64_t>& v);
  void bytes(const void* data, std::size_t n);

  const std::vector<std::uint8_t>& buffer() const noexcept { return buf_; }
  std::vector<std::uint8_t> take() noexcept { return std::move(buf_); }
  std::size_t size() const noexcept { return buf_.size(); }

 private:
  void raw_le(std::uint64_t v, int n);
  std::vector<std::uint8_t> buf_;
};

struct SectionHeader {
  std::uint32_t tag = 0;
  std::uint16_t major = 0;
  std::uint16_t minor = 0;
  std::uint32_t flags = 0;
  std::uint64_t length = 0;
  bool required() const noexcept { return (flags & kSectionRequired) != 0; }
};

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size, std::string where = "snapshot")
      : p_(data), end_(data + size), where_(std::move(where)) {}

  std::uint8_t u8();
  std::uint16_t u16() { return static_cast<std::uint16_t>(raw_le(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(raw_le(4)); }
  std::uint64_t u64() { return raw_le(8); }
  std::int8_t i8() { return static_cast<std::int8_t>(u8()); }
  std::int32_t i32() { return static_cast<std::int32_t>(u32()); }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64();
  bool boolean();
  std::string str(std::size_t max_len = 1u << 20);
  std::vector<double> f64s(std::size_t max_count);
  void f64_span(double* out, std::size_t n);
  std::vector<std::int64_t> i64s(std::size_t max_count);
  std::vector<std::uint64_t> u64s(std::size_t max_count);
  void skip(std::size_t n);

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
  bool done() const noexcept { return p_ == end_; }

  // Read the next section header and hand its payload to `body` (this reader
  // moves past the payload). False at the end of the buffer.
  bool next_section(SectionHeader& h, Reader& body);

  // Throw SnapshotError("<where>: <what>").
  [[noreturn]] void fail(const std::string& what) const;
  const std::string& where() const noexcept { return where_; }

 private:
  std::uint64_t raw_le(int n);
  void need(std::size_t n);
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::string where_;
};

// Refuse a known section whose major version is newer than `supported_major`.
void check_version(const SectionHeader& h, std::uint16_t supported_major);

}  // namespace heatcore::serial
