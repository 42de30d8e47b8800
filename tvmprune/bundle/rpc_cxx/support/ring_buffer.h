/*!
 * \file support/ring_buffer.h
 * \brief tvmprune's byte queue for TVM's RPC endpoint (what was received / what is to be sent).
 *
 * A FIFO of bytes in one growable buffer: writes append at the end, reads consume from the
 * front; consumed space is reclaimed by moving the live bytes to the front when needed.
 */
#ifndef TVMPRUNE_SUPPORT_RING_BUFFER_H_
#define TVMPRUNE_SUPPORT_RING_BUFFER_H_

#include <tvm/ffi/error.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tvm {
namespace support {

class RingBuffer {
 public:
  /*! \return bytes written and not read yet. */
  size_t bytes_available() const { return end_ - begin_; }

  /*! \brief Makes room for at least `n` queued bytes without further allocation. */
  void Reserve(size_t n) { MakeRoom(n > bytes_available() ? n - bytes_available() : 0); }

  /*! \brief Moves `size` queued bytes (all must be there) into `data`. */
  void Read(void* data, size_t size) {
    TVM_FFI_ICHECK_LE(size, bytes_available());
    std::memcpy(data, buf_.data() + begin_, size);
    Consume(size);
  }

  /*! \brief Queues `size` bytes from `data`. */
  void Write(const void* data, size_t size) {
    MakeRoom(size);
    std::memcpy(buf_.data() + end_, data, size);
    end_ += size;
  }

  /*!
   * \brief Offers up to `max_nbytes` queued bytes to `fread(const void*, size_t) -> size_t`,
   *        which returns how many it took; those are consumed.
   * \return the bytes taken.
   */
  template <typename FRead>
  size_t ReadWithCallback(FRead fread, size_t max_nbytes) {
    size_t n = std::min(max_nbytes, bytes_available());
    if (n == 0) return 0;
    size_t taken = fread(buf_.data() + begin_, n);
    Consume(taken);
    return taken;
  }

  /*!
   * \brief Lets `fwrite(void*, size_t) -> size_t` fill up to `max_nbytes` bytes at the end;
   *        it returns how many it wrote, and those are queued.
   * \return the bytes queued.
   */
  template <typename FWrite>
  size_t WriteWithCallback(FWrite fwrite, size_t max_nbytes) {
    MakeRoom(max_nbytes);
    size_t n = fwrite(buf_.data() + end_, max_nbytes);
    end_ += n;
    return n;
  }

 private:
  void Consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // Ensures `extra` bytes fit after end_, compacting before growing.
  void MakeRoom(size_t extra) {
    if (end_ + extra <= buf_.size()) return;
    size_t live = bytes_available();
    if (begin_ != 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, live);
      begin_ = 0;
      end_ = live;
    }
    if (live + extra > buf_.size()) buf_.resize(std::max(live + extra, buf_.size() * 2));
  }

  std::vector<char> buf_;
  size_t begin_{0};
  size_t end_{0};
};

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_SUPPORT_RING_BUFFER_H_
