/*!
 * \file support/socket.h
 * \brief tvmprune's POSIX TCP socket for TVM's RPC runtime (rpc_socket_impl.cc).
 *
 * Covers what that source uses: a TCPSocket wrapping a file descriptor (blocking Send / Recv,
 * SendAll / RecvAll, Create, Connect, Close), SockAddr resolved from a host name and port, and
 * Socket::Error, which throws the current errno as a TVM error. POSIX only (Linux boards).
 */
#ifndef TVMPRUNE_SUPPORT_SOCKET_H_
#define TVMPRUNE_SUPPORT_SOCKET_H_

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <tvm/ffi/error.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

/*! \brief An IPv4 / IPv6 address and port. */
class SockAddr {
 public:
  SockAddr() { std::memset(&addr_, 0, sizeof(addr_)); }
  SockAddr(const char* host, int port) : SockAddr() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(host, service.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) {
      TVM_FFI_THROW(RuntimeError) << "cannot resolve " << host << ":" << port << ": " << gai_strerror(rc);
    }
    std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
    len_ = res->ai_addrlen;
    freeaddrinfo(res);
  }
  int ss_family() const { return addr_.ss_family; }
  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t size() const { return len_; }
  /*! \return "host:port". */
  std::string AsString() const {
    char host[INET6_ADDRSTRLEN] = {0};
    int port = 0;
    if (addr_.ss_family == AF_INET) {
      auto* a = reinterpret_cast<const sockaddr_in*>(&addr_);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      port = ntohs(a->sin_port);
    } else if (addr_.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<const sockaddr_in6*>(&addr_);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      port = ntohs(a->sin6_port);
    }
    return std::string(host) + ":" + std::to_string(port);
  }

 private:
  sockaddr_storage addr_;
  socklen_t len_{0};
};

/*! \brief Error reporting shared by sockets. */
class Socket {
 public:
  using SockType = int;
  static constexpr SockType kInvalid = -1;

  /*! \brief Throws "`where`: <strerror(errno)>". */
  [[noreturn]] static void Error(const char* where) {
    int err = errno;
    TVM_FFI_THROW(RuntimeError) << "socket error in " << where << ": " << std::strerror(err);
    throw;  // not reached: TVM_FFI_THROW throws
  }
};

/*! \brief A blocking TCP socket; copies share the descriptor (Close() closes it for all). */
class TCPSocket : public Socket {
 public:
  TCPSocket() = default;
  explicit TCPSocket(SockType fd) : sockfd(fd) {}

  bool BadSocket() const { return sockfd == kInvalid; }

  void Create(int family = AF_INET) {
    sockfd = socket(family, SOCK_STREAM, 0);
    if (sockfd == kInvalid) Error("TCPSocket::Create");
  }

  bool Connect(const SockAddr& addr) { return connect(sockfd, addr.data(), addr.size()) == 0; }

  void Close() {
    if (sockfd != kInvalid) {
      close(sockfd);
      sockfd = kInvalid;
    }
  }

  /*! \return bytes sent, or -1 on error (retries when interrupted). */
  ssize_t Send(const void* data, size_t size) {
    ssize_t n;
    do {
      n = send(sockfd, data, size, MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);
    return n;
  }

  /*! \return bytes received (0: peer closed), or -1 on error (retries when interrupted). */
  ssize_t Recv(void* data, size_t size) {
    ssize_t n;
    do {
      n = recv(sockfd, data, size, 0);
    } while (n == -1 && errno == EINTR);
    return n;
  }

  /*! \return `size` unless the peer closed first (then the bytes sent so far). */
  size_t SendAll(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    size_t done = 0;
    while (done < size) {
      ssize_t n = Send(p + done, size - done);
      if (n == -1) Error("TCPSocket::SendAll");
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  /*! \return `size` unless the peer closed first (then the bytes received so far). */
  size_t RecvAll(void* data, size_t size) {
    char* p = static_cast<char*>(data);
    size_t done = 0;
    while (done < size) {
      ssize_t n = Recv(p + done, size - done);
      if (n == -1) Error("TCPSocket::RecvAll");
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  SockType sockfd{kInvalid};
};

}  // namespace support
}  // namespace tvm

#endif  // TVMPRUNE_SUPPORT_SOCKET_H_
