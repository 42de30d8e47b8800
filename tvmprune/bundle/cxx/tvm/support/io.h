/*!
 * \file tvm/support/io.h
 * \brief tvmprune's minimal binary stream interface for building TVM's runtime from the wheel.
 *
 * Mirrors the interface TVM's runtime sources use: a stream moves raw bytes (virtual Read /
 * Write) and typed values through support::Serializer<T> (serializer.h).
 */
#ifndef TVM_SUPPORT_IO_H_
#define TVM_SUPPORT_IO_H_

#include <cstddef>
#include <cstdint>

namespace tvm {
namespace support {

template <typename T>
struct Serializer;

/*! \brief A byte stream with typed (de)serialisation helpers. */
class Stream {
 public:
  virtual ~Stream() = default;
  /*! \return the number of bytes read (< size at end of stream). */
  virtual size_t Read(void* ptr, size_t size) = 0;
  /*! \return the number of bytes written. */
  virtual size_t Write(const void* ptr, size_t size) = 0;

  template <typename T>
  void Write(const T& data) {
    Serializer<T>::Write(this, data);
  }
  template <typename T>
  bool Read(T* out) {
    return Serializer<T>::Read(this, out);
  }
  template <typename T>
  void WriteArray(const T* data, size_t num_elems) {
    for (size_t i = 0; i < num_elems; ++i) Write<T>(data[i]);
  }
  template <typename T>
  bool ReadArray(T* data, size_t num_elems) {
    for (size_t i = 0; i < num_elems; ++i) {
      if (!Read<T>(data + i)) return false;
    }
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#include <tvm/support/serializer.h>

#endif  // TVM_SUPPORT_IO_H_
