/*!
 * \file tvm/support/serializer.h
 * \brief tvmprune's minimal Serializer<T> for TVM's runtime: the binary layout of VM executables.
 *
 * Layout (little endian): trivially copyable values as their bytes; std::string and
 * std::vector<T> (and ffi::String, ffi::Array<T>) as a uint64_t element count followed by the elements; std::pair as first then
 * second; maps as a uint64_t count followed by (key, value) pairs.
 */
#ifndef TVM_SUPPORT_SERIALIZER_H_
#define TVM_SUPPORT_SERIALIZER_H_

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {

/*! \brief Trivially copyable values: their bytes (swapped on big-endian hosts). */
template <typename T>
struct Serializer {
  static constexpr bool enabled = std::is_trivially_copyable<T>::value;
  static_assert(enabled, "tvmprune's serializer.h has no Serializer for this type");
  static void Write(Stream* strm, const T& data) {
    if (TVM_FFI_IO_NO_ENDIAN_SWAP || !std::is_arithmetic<T>::value) {
      strm->Write(static_cast<const void*>(&data), sizeof(T));
    } else {
      T copy = data;
      ffi::ByteSwap(&copy, sizeof(T), 1);
      strm->Write(static_cast<const void*>(&copy), sizeof(T));
    }
  }
  static bool Read(Stream* strm, T* out) {
    if (strm->Read(static_cast<void*>(out), sizeof(T)) != sizeof(T)) return false;
    if (!TVM_FFI_IO_NO_ENDIAN_SWAP && std::is_arithmetic<T>::value) ffi::ByteSwap(out, sizeof(T), 1);
    return true;
  }
};

template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::string& data) {
    strm->Write<uint64_t>(static_cast<uint64_t>(data.size()));
    if (!data.empty()) strm->Write(static_cast<const void*>(data.data()), data.size());
  }
  static bool Read(Stream* strm, std::string* out) {
    uint64_t size;
    if (!strm->Read<uint64_t>(&size)) return false;
    out->resize(static_cast<size_t>(size));
    if (size == 0) return true;
    return strm->Read(static_cast<void*>(&(*out)[0]), out->size()) == out->size();
  }
};

template <typename T>
struct Serializer<std::vector<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::vector<T>& data) {
    strm->Write<uint64_t>(static_cast<uint64_t>(data.size()));
    for (const T& item : data) strm->Write<T>(item);
  }
  static bool Read(Stream* strm, std::vector<T>* out) {
    uint64_t size;
    if (!strm->Read<uint64_t>(&size)) return false;
    out->resize(static_cast<size_t>(size));
    for (T& item : *out) {
      if (!strm->Read<T>(&item)) return false;
    }
    return true;
  }
};

template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::String& data) {
    strm->Write<uint64_t>(static_cast<uint64_t>(data.size()));
    if (data.size() != 0) strm->Write(static_cast<const void*>(data.data()), data.size());
  }
  static bool Read(Stream* strm, ffi::String* out) {
    std::string text;
    if (!Serializer<std::string>::Read(strm, &text)) return false;
    *out = ffi::String(std::move(text));
    return true;
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::Array<T>& data) {
    strm->Write<uint64_t>(static_cast<uint64_t>(data.size()));
    for (const T& item : data) strm->Write<T>(item);
  }
  static bool Read(Stream* strm, ffi::Array<T>* out) {
    uint64_t size;
    if (!strm->Read<uint64_t>(&size)) return false;
    ffi::Array<T> items;
    for (uint64_t i = 0; i < size; ++i) {
      T item;
      if (!strm->Read<T>(&item)) return false;
      items.push_back(std::move(item));
    }
    *out = std::move(items);
    return true;
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::pair<A, B>& data) {
    strm->Write<A>(data.first);
    strm->Write<B>(data.second);
  }
  static bool Read(Stream* strm, std::pair<A, B>* out) {
    return strm->Read<A>(&out->first) && strm->Read<B>(&out->second);
  }
};

/*! \brief Maps as a count and (key, value) pairs. */
template <typename Map>
struct MapSerializer {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const Map& data) {
    strm->Write<uint64_t>(static_cast<uint64_t>(data.size()));
    for (const auto& kv : data) {
      strm->Write(kv.first);
      strm->Write(kv.second);
    }
  }
  static bool Read(Stream* strm, Map* out) {
    uint64_t size;
    if (!strm->Read<uint64_t>(&size)) return false;
    out->clear();
    for (uint64_t i = 0; i < size; ++i) {
      typename Map::key_type key;
      typename Map::mapped_type value;
      if (!strm->Read(&key) || !strm->Read(&value)) return false;
      out->emplace(std::move(key), std::move(value));
    }
    return true;
  }
};

template <typename K, typename V>
struct Serializer<std::map<K, V>> : MapSerializer<std::map<K, V>> {};
template <typename K, typename V>
struct Serializer<std::unordered_map<K, V>> : MapSerializer<std::unordered_map<K, V>> {};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_SERIALIZER_H_
