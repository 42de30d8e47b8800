/*!
 * \file support/utils.h
 * \brief tvmprune's stand-in for TVM's support/utils.h as TVM's RPC sources use it.
 */
#ifndef TVMPRUNE_RPC_SUPPORT_UTILS_H_
#define TVMPRUNE_RPC_SUPPORT_UTILS_H_

#include <string>

namespace tvm {
namespace support {

/*! \brief True when `s` begins with `prefix` (RPC error messages). */
inline bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_RPC_SUPPORT_UTILS_H_
