/*!
 * \file npy.h
 * \brief Read and write float32, C-order .npy files (NumPy format versions 1.0 to 3.0).
 *
 * Only what tvmprune-run needs: dtype '<f4', fortran_order False, any shape. Anything else is
 * rejected with a message saying what the file holds and what is expected.
 */
#ifndef TVMPRUNE_BUNDLE_NPY_H_
#define TVMPRUNE_BUNDLE_NPY_H_

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tvmprune {

/*! \brief A float32 array: shape and C-order (row-major) data. */
struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

inline int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s.empty() ? "scalar" : s;
}

namespace npy_detail {

/*! \brief The value of 'key' in the header dict, up to the next ',' at depth 0 (or '}'). */
inline std::string HeaderField(const std::string& header, const std::string& key, const std::string& path) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) throw std::runtime_error(path + ": .npy header has no '" + key + "'");
  size_t v = header.find(':', k) + 1;
  int depth = 0;
  size_t end = v;
  for (; end < header.size(); ++end) {
    char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if ((c == ',' && depth == 0) || c == '}') break;
  }
  std::string value = header.substr(v, end - v);
  size_t a = value.find_first_not_of(" '\""), b = value.find_last_not_of(" '\"");
  return a == std::string::npos ? "" : value.substr(a, b - a + 1);
}

inline std::vector<int64_t> ParseShape(const std::string& tuple) {
  std::vector<int64_t> shape;
  std::string digits;
  for (char c : tuple + ",") {
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (c == ',' && !digits.empty()) {
      shape.push_back(std::stoll(digits));
      digits.clear();
    }
  }
  return shape;
}

}  // namespace npy_detail

/*! \brief Read a float32 C-order .npy file; throws std::runtime_error saying what is wrong. */
inline NpyArray ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    throw std::runtime_error(path + " is not a .npy file (write it with numpy.save)");
  }
  uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(len_bytes), magic[6] == 1 ? 2 : 4);
  for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  std::string header(header_len, '\0');
  if (!in.read(&header[0], header_len)) throw std::runtime_error(path + ": truncated .npy header");
  std::string descr = npy_detail::HeaderField(header, "descr", path);
  if (descr != "<f4") {
    throw std::runtime_error(path + " holds dtype '" + descr + "'; tvmprune-run needs float32 ('<f4'): " +
                             "save x.astype(numpy.float32)");
  }
  if (npy_detail::HeaderField(header, "fortran_order", path) != "False") {
    throw std::runtime_error(path + " is Fortran-ordered; save numpy.ascontiguousarray(x)");
  }
  NpyArray arr;
  arr.shape = npy_detail::ParseShape(npy_detail::HeaderField(header, "shape", path));
  arr.data.resize(static_cast<size_t>(NumElements(arr.shape)));
  if (!in.read(reinterpret_cast<char*>(arr.data.data()), arr.data.size() * sizeof(float))) {
    throw std::runtime_error(path + ": data is shorter than its shape " + ShapeString(arr.shape) + " says");
  }
  return arr;
}

/*! \brief Write a float32 C-order .npy file (format 1.0, header padded to 64 bytes). */
inline void WriteNpy(const std::string& path, const NpyArray& arr) {
  std::ostringstream dict;
  dict << "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < arr.shape.size(); ++i) dict << arr.shape[i] << (arr.shape.size() == 1 || i + 1 < arr.shape.size() ? ", " : "");
  dict << "), }";
  std::string header = dict.str();
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  uint16_t len = static_cast<uint16_t>(header.size());
  const char prefix[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(prefix, 8);
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(arr.data.data()), arr.data.size() * sizeof(float));
  if (!out) throw std::runtime_error("writing " + path + " failed");
}

}  // namespace tvmprune

#endif  // TVMPRUNE_BUNDLE_NPY_H_
