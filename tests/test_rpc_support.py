"""tvmprune's support headers for TVM's RPC runtime (tvmprune/bundle/rpc_cxx), compiled for this
machine and exercised: the byte FIFO keeps order across growth / compaction and callbacks, the
arena hands out aligned storage, the socket wrapper moves bytes and sees a closed peer."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHECK_CC = r"""
#include <support/arena.h>
#include <support/ring_buffer.h>
#include <support/socket.h>
#include <support/utils.h>
#include <sys/socket.h>
#include <cstdio>
#include <string>
int main() {
  tvm::support::RingBuffer rb;
  std::string got;
  for (int round = 0; round < 200; ++round) {
    std::string chunk(1 + (round * 37) % 5000, char('a' + round % 26));
    rb.Write(chunk.data(), chunk.size());
    size_t take = rb.bytes_available() / 2 + 1;
    std::string part(take, '\0');
    rb.Read(&part[0], take);
    got += part;
    auto take3 = [&](const void* d, size_t n) { size_t k = n < 3 ? n : 3; got.append((const char*)d, k); return k; };
    rb.ReadWithCallback(take3, 10);
  }
  rb.WriteWithCallback([](void* d, size_t n) { std::memset(d, 'z', 4); return size_t(4); }, 100);
  while (rb.bytes_available()) { char c; rb.Read(&c, 1); got += c; }
  std::string want;
  for (int round = 0; round < 200; ++round) want += std::string(1 + (round * 37) % 5000, char('a' + round % 26));
  want += "zzzz";
  tvm::support::Arena arena;
  double* big = arena.allocate_<double>(20000);
  char* small = arena.allocate_<char>(3);
  big[19999] = 1.5; small[2] = 'x';
  bool aligned = reinterpret_cast<uintptr_t>(arena.allocate_<double>(1)) % alignof(double) == 0;
  arena.RecycleAll();
  int fds[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  tvm::support::TCPSocket a(fds[0]), b(fds[1]);
  std::string msg(100000, 'm');
  std::string echo(msg.size(), '\0');
  bool sock_ok = a.SendAll(msg.data(), 1000) == 1000 && b.RecvAll(&echo[0], 1000) == 1000 &&
                 echo.compare(0, 1000, msg, 0, 1000) == 0;
  a.Close();
  sock_ok = sock_ok && a.BadSocket() && b.Recv(&echo[0], 10) == 0;  // peer closed
  b.Close();
  sock_ok = sock_ok && tvm::support::SockAddr("127.0.0.1", 9190).AsString() == "127.0.0.1:9190";
  sock_ok = sock_ok && tvm::support::StartsWith("RPCSessionTimeoutError: x", "RPCSessionTimeoutError: ") &&
            !tvm::support::StartsWith("RPC", "RPCSession");
  aligned = aligned && sock_ok;
  std::printf("%s %s\n", got == want ? "fifo-ok" : "fifo-BAD", aligned ? "arena-socket-ok" : "arena-socket-BAD");
  return got == want && aligned ? 0 : 1;
}
"""


def test_rpc_support_headers_behave(tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found (apt-get install g++)")
    import tvm_ffi

    from tvmprune.bundle.rpc_build import RPC_CXX_DIR

    ffi = Path(tvm_ffi.__file__).parent
    (tmp_path / "check.cc").write_text(CHECK_CC)
    exe = tmp_path / "check"
    build = subprocess.run([gxx, "-std=c++17", "-O1", f"-I{RPC_CXX_DIR}", f"-I{ffi / 'include'}",
                            f"-I{ffi / '3rdparty' / 'dlpack' / 'include'}", str(tmp_path / "check.cc"),
                            "-o", str(exe),
                            f"-L{ffi / 'lib'}", "-ltvm_ffi", f"-Wl,-rpath,{ffi / 'lib'}"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["fifo-ok", "arena-socket-ok"], run.stdout + run.stderr
