/*!
 * \file support/utils.h
 * \brief tvmprune's stand-in for TVM's support/utils.h: the one helper the CPU runtime uses.
 */
#ifndef TVMPRUNE_SUPPORT_UTILS_H_
#define TVMPRUNE_SUPPORT_UTILS_H_

#include <algorithm>
#include <cctype>
#include <string>

namespace tvm {
namespace support {

/*! \brief True for a non-empty string of decimal digits (e.g. a CPU id in TVM_BIND_THREADS). */
inline bool IsNumber(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_SUPPORT_UTILS_H_
