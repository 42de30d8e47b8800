/*!
 * \file support/arena.h
 * \brief tvmprune's bump allocator for TVM's RPC endpoint: scratch arrays freed all at once.
 */
#ifndef TVMPRUNE_SUPPORT_ARENA_H_
#define TVMPRUNE_SUPPORT_ARENA_H_

#include <cstddef>
#include <memory>
#include <vector>

namespace tvm {
namespace support {

/*! \brief Hands out trivially-constructible arrays; RecycleAll() releases every one of them. */
class Arena {
 public:
  /*! \return uninitialised storage for `count` objects of a trivial type T. */
  template <typename T>
  T* allocate_(int count) {
    size_t bytes = sizeof(T) * static_cast<size_t>(count > 0 ? count : 1);
    size_t align = alignof(std::max_align_t);
    size_t start = (used_ + align - 1) / align * align;
    if (blocks_.empty() || start + bytes > capacity_) {
      capacity_ = bytes > kBlockBytes ? bytes : kBlockBytes;
      blocks_.emplace_back(new std::max_align_t[(capacity_ + sizeof(std::max_align_t) - 1) /
                                                sizeof(std::max_align_t)]);
      start = 0;
    }
    used_ = start + bytes;
    return reinterpret_cast<T*>(reinterpret_cast<char*>(blocks_.back().get()) + start);
  }

  /*! \brief Frees everything allocated so far. */
  void RecycleAll() {
    blocks_.clear();
    used_ = capacity_ = 0;
  }

 private:
  static constexpr size_t kBlockBytes = 64 * 1024;
  std::vector<std::unique_ptr<std::max_align_t[]>> blocks_;
  size_t used_{0};
  size_t capacity_{0};
};

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_SUPPORT_ARENA_H_
