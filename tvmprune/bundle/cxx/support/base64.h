/*!
 * \file support/base64.h
 * \brief tvmprune's base64 streams for TVM's runtime (tensor <-> JSON), buffered over tvm-ffi's codec.
 */
#ifndef TVMPRUNE_SUPPORT_BASE64_H_
#define TVMPRUNE_SUPPORT_BASE64_H_

#include <tvm/ffi/extra/base64.h>
#include <tvm/support/io.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

/*! \brief Decodes base64 text read from another stream (all of it, at InitPosition). */
class Base64InStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64InStream(Stream* source) : source_(source) {}
  /*! \brief Reads and decodes the rest of the source; surrounding whitespace is ignored. */
  void InitPosition() {
    std::string text;
    char chunk[4096];
    for (size_t n; (n = source_->Read(chunk, sizeof(chunk))) != 0;) text.append(chunk, n);
    text.erase(std::remove_if(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); }),
               text.end());
    ffi::Bytes raw = ffi::Base64Decode(TVMFFIByteArray{text.data(), text.size()});
    decoded_.assign(raw.data(), raw.size());
    pos_ = 0;
  }
  size_t Read(void* ptr, size_t size) override {
    size_t n = std::min(size, decoded_.size() - pos_);
    if (n != 0) std::memcpy(ptr, decoded_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) override { return 0; }

 private:
  Stream* source_;
  std::string decoded_;
  size_t pos_ = 0;
};

/*! \brief Collects bytes and writes them base64-encoded to another stream at Finish. */
class Base64OutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  explicit Base64OutStream(Stream* sink) : sink_(sink) {}
  size_t Read(void*, size_t) override { return 0; }
  size_t Write(const void* ptr, size_t size) override {
    raw_.append(static_cast<const char*>(ptr), size);
    return size;
  }
  void Finish() {
    ffi::String text = ffi::Base64Encode(TVMFFIByteArray{raw_.data(), raw_.size()});
    sink_->Write(static_cast<const void*>(text.data()), text.size());
    raw_.clear();
  }

 private:
  Stream* sink_;
  std::string raw_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_SUPPORT_BASE64_H_
