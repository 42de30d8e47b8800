/*!
 * \file support/bytes_io.h
 * \brief tvmprune's in-memory streams for TVM's runtime: read from a byte buffer, append to a string.
 */
#ifndef TVMPRUNE_SUPPORT_BYTES_IO_H_
#define TVMPRUNE_SUPPORT_BYTES_IO_H_

#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

/*! \brief Reads a buffer the caller keeps alive (std::string, ffi::Bytes, ffi::String). */
class BytesInStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  template <typename Buffer>
  explicit BytesInStream(const Buffer& buffer) : data_(buffer.data()), size_(buffer.size()) {}
  BytesInStream(const char* data, size_t size) : data_(data), size_(size) {}

  size_t Read(void* ptr, size_t size) override {
    size_t n = std::min(size, size_ - pos_);
    if (n != 0) std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) override { return 0; }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

/*! \brief Appends to a std::string. */
class BytesOutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit BytesOutStream(std::string* out) : out_(out) {}
  size_t Read(void*, size_t) override { return 0; }
  size_t Write(const void* ptr, size_t size) override {
    out_->append(static_cast<const char*>(ptr), size);
    return size;
  }

 private:
  std::string* out_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_SUPPORT_BYTES_IO_H_
