// Ambit's only native code: the socket and network-namespace calls Node does not expose.
// Every function runs synchronously on the calling JS thread. setns(2) only affects the
// calling thread, so running it on a libuv pool thread would leave an arbitrary pool
// thread in a pod's netns. Instead this code switches the JS thread, creates the socket
// and switches straight back. The JS wrapper (../index.ts) validates arguments and adds
// `code` to errors. This file still checks everything it reads, because a bad value must
// never reach a syscall.

#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

// The values come from <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>.
// They are copied here because those headers clash with glibc's <netinet/in.h>.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

namespace {

const char kThreadNetns[] = "/proc/thread-self/ns/net";

// A failed syscall, turned into a JS error at the N-API boundary. `in_netns` is false for
// failures that happen while opening or entering the namespace. Their detail already
// names the netns path.
struct Failure {
  int err = 0;
  std::string syscall;
  std::string detail;
  bool in_netns = true;

  bool Set(int e, const char* call, std::string what, bool inside = true) {
    err = e;
    syscall = call;
    detail = std::move(what);
    in_netns = inside;
    return false;
  }
};

// While a NetnsGuard is in scope, the calling thread is inside the target netns. The
// destructor switches back. If switching back fails, the process aborts: a JS thread
// left in a pod's namespace would open the next listener, or make the next
// control-plane connection, on the wrong network. That is a security bug, and no
// caller could handle it as an error.
class NetnsGuard {
 public:
  NetnsGuard() = default;
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  ~NetnsGuard() { Leave(); }

  bool Enter(const std::string& path, Failure* f) {
    int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) return f->Set(errno, "open", path, false);
    int self = open(kThreadNetns, O_RDONLY | O_CLOEXEC);
    if (self < 0) {
      int e = errno;
      close(target);
      return f->Set(e, "open", kThreadNetns, false);
    }
    // Skipping setns when the thread is already in the target netns saves two
    // syscalls. It also lets a process without CAP_SYS_ADMIN use its own netns path.
    struct stat a, b;
    if (fstat(target, &a) == 0 && fstat(self, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino) {
      close(target);
      close(self);
      return true;
    }
    if (setns(target, CLONE_NEWNET) != 0) {
      int e = errno;
      close(target);
      close(self);
      return f->Set(e, "setns", path, false);
    }
    close(target);
    saved_ = self;
    return true;
  }

  void Leave() {
    if (saved_ < 0) return;
    if (setns(saved_, CLONE_NEWNET) != 0) {
      fprintf(stderr,
              "ambit native: FATAL: cannot return the thread to its original network "
              "namespace (setns: %s); aborting rather than run in a pod's netns\n",
              strerror(errno));
      abort();
    }
    close(saved_);
    saved_ = -1;
  }

 private:
  int saved_ = -1;
};

// socket() is the only call that runs inside the target netns. A socket stays in the
// netns where it was created, and setsockopt/bind/listen/connect act on that netns no
// matter where the caller is. So the thread spends as little time as possible outside
// its own namespace, and every later failure path runs in the caller's netns.
int CreateSocket(const std::string* netns, int family, int type, Failure* f) {
  NetnsGuard guard;
  if (netns != nullptr && !guard.Enter(*netns, f)) return -1;
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) f->Set(errno, "socket", family == AF_INET6 ? "AF_INET6" : "AF_INET");
  return fd;
}

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;
};

// Only numeric addresses are accepted. A zone suffix such as fe80::1%eth0 is rejected
// too: the interface name would have to be looked up inside the target netns.
bool ParseAddr(const std::string& host, int port, Addr* out) {
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out->ss);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    out->family = AF_INET;
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    return true;
  }
  return false;
}

std::string Endpoint(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

bool SetInt(int fd, int level, int opt, int value, const char* name, Failure* f) {
  if (setsockopt(fd, level, opt, &value, sizeof(value)) != 0) {
    return f->Set(errno, "setsockopt", name);
  }
  return true;
}

// IP_TRANSPARENT and IP_FREEBIND have IPv6 versions. Using the option that matches the
// socket's family keeps the flag that the IPv6 stack checks.
bool SetTransparent(int fd, int family, Failure* f) {
  return family == AF_INET6
             ? SetInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT", f)
             : SetInt(fd, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT", f);
}

bool SetFreebind(int fd, int family, Failure* f) {
  return family == AF_INET6 ? SetInt(fd, SOL_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND", f)
                            : SetInt(fd, SOL_IP, IP_FREEBIND, 1, "IP_FREEBIND", f);
}

// ---------------------------------------------------------------------------------------
// N-API plumbing: reading options and throwing errors.

// A JS exception is already pending when this is false.
#define NAPI_OK(call) \
  do {                \
    if ((call) != napi_ok) return false; \
  } while (0)

bool ThrowType(napi_env env, const std::string& msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg.c_str());
  return false;
}

void ThrowFailure(napi_env env, const Failure& f, const std::string* netns) {
  std::string msg = f.syscall + "(" + f.detail + ")";
  if (netns != nullptr && f.in_netns) msg += " in " + *netns;
  msg += ": ";
  msg += strerror(f.err);
  napi_value text, error, v;
  if (napi_create_string_utf8(env, msg.c_str(), msg.size(), &text) != napi_ok ||
      napi_create_error(env, nullptr, text, &error) != napi_ok) {
    napi_throw_error(env, nullptr, msg.c_str());
    return;
  }
  // errno is negative, as in Node's own system errors, e.g. fs and net. The wrapper adds
  // `code` with util.getSystemErrorName().
  napi_create_int32(env, -f.err, &v);
  napi_set_named_property(env, error, "errno", v);
  napi_create_string_utf8(env, f.syscall.c_str(), f.syscall.size(), &v);
  napi_set_named_property(env, error, "syscall", v);
  if (netns != nullptr) {
    napi_create_string_utf8(env, netns->c_str(), netns->size(), &v);
    napi_set_named_property(env, error, "netns", v);
  }
  napi_throw(env, error);
}

// Reads property `key` of `obj`. *present is false when it is undefined or null.
bool GetProp(napi_env env, napi_value obj, const char* key, napi_value* out, bool* present) {
  NAPI_OK(napi_get_named_property(env, obj, key, out));
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, *out, &t));
  *present = t != napi_undefined && t != napi_null;
  return true;
}

bool GetString(napi_env env, napi_value obj, const char* key, bool required, std::string* out,
               bool* present) {
  napi_value v;
  if (!GetProp(env, obj, key, &v, present)) return false;
  if (!*present) return required ? ThrowType(env, std::string(key) + " is required") : true;
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t != napi_string) return ThrowType(env, std::string(key) + " must be a string");
  size_t len = 0;
  NAPI_OK(napi_get_value_string_utf8(env, v, nullptr, 0, &len));
  if (len == 0 || len > 4096) return ThrowType(env, std::string(key) + " must be 1..4096 bytes");
  std::string s(len, '\0');
  NAPI_OK(napi_get_value_string_utf8(env, v, &s[0], len + 1, &len));
  if (s.find('\0') != std::string::npos) {
    return ThrowType(env, std::string(key) + " must not contain NUL");
  }
  *out = std::move(s);
  return true;
}

bool GetInt(napi_env env, napi_value obj, const char* key, bool required, double min, double max,
            int64_t* out, bool* present) {
  napi_value v;
  if (!GetProp(env, obj, key, &v, present)) return false;
  if (!*present) return required ? ThrowType(env, std::string(key) + " is required") : true;
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  double d = 0;
  if (t == napi_number) NAPI_OK(napi_get_value_double(env, v, &d));
  // The range check comes first: it rejects NaN and infinities, which must never be cast
  // to an integer.
  if (t != napi_number || !(d >= min && d <= max) || d != trunc(d)) {
    return ThrowType(env, std::string(key) + " must be an integer in [" +
                              std::to_string(static_cast<int64_t>(min)) + ", " +
                              std::to_string(static_cast<int64_t>(max)) + "]");
  }
  *out = static_cast<int64_t>(d);
  return true;
}

bool GetBool(napi_env env, napi_value obj, const char* key, bool* out) {
  napi_value v;
  bool present;
  if (!GetProp(env, obj, key, &v, &present)) return false;
  *out = false;
  if (!present) return true;
  napi_valuetype t;
  NAPI_OK(napi_typeof(env, v, &t));
  if (t != napi_boolean) return ThrowType(env, std::string(key) + " must be a boolean");
  NAPI_OK(napi_get_value_bool(env, v, out));
  return true;
}

bool GetOptionsArg(napi_env env, napi_callback_info info, napi_value* obj) {
  size_t argc = 1;
  NAPI_OK(napi_get_cb_info(env, info, &argc, obj, nullptr, nullptr));
  napi_valuetype t = napi_undefined;
  if (argc >= 1) NAPI_OK(napi_typeof(env, *obj, &t));
  if (t != napi_object) return ThrowType(env, "options must be an object");
  return true;
}

bool GetFdArgs(napi_env env, napi_callback_info info, size_t want, int* fd, uint32_t* extra) {
  napi_value argv[2];
  size_t argc = 2;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < want) return ThrowType(env, "missing arguments");
  double d[2] = {0, 0};
  for (size_t i = 0; i < want; i++) {
    napi_valuetype t;
    NAPI_OK(napi_typeof(env, argv[i], &t));
    if (t == napi_number) NAPI_OK(napi_get_value_double(env, argv[i], &d[i]));
    double max = i == 0 ? 2147483647.0 : 4294967295.0;
    if (t != napi_number || !(d[i] >= 0 && d[i] <= max) || d[i] != trunc(d[i])) {
      return ThrowType(env, i == 0 ? "fd must be a non-negative integer"
                                   : "mark must be an integer in [0, 4294967295]");
    }
  }
  *fd = static_cast<int>(d[0]);
  if (extra != nullptr) *extra = static_cast<uint32_t>(d[1]);
  return true;
}

napi_value Int(napi_env env, int64_t n) {
  napi_value v = nullptr;
  napi_create_int64(env, n, &v);
  return v;
}

// ---------------------------------------------------------------------------------------
// Exported functions. Each takes one options object, already validated by the wrapper.

// listenTcp({ netns?, host, port, backlog?, reusePort?, transparent?, freebind? }) -> fd
napi_value ListenTcp(napi_env env, napi_callback_info info) {
  napi_value o;
  std::string netns, host;
  bool has_netns, present;
  int64_t port, backlog = 511;  // Node's default backlog.
  bool reuse_port, transparent, freebind;
  if (!GetOptionsArg(env, info, &o) || !GetString(env, o, "netns", false, &netns, &has_netns) ||
      !GetString(env, o, "host", true, &host, &present) ||
      !GetInt(env, o, "port", true, 0, 65535, &port, &present) ||
      !GetInt(env, o, "backlog", false, 0, 65535, &backlog, &present) ||
      !GetBool(env, o, "reusePort", &reuse_port) ||
      !GetBool(env, o, "transparent", &transparent) || !GetBool(env, o, "freebind", &freebind)) {
    return nullptr;
  }
  Addr addr;
  if (!ParseAddr(host, static_cast<int>(port), &addr)) {
    ThrowType(env, "host must be a numeric IPv4 or IPv6 address: " + host);
    return nullptr;
  }
  const std::string* ns = has_netns ? &netns : nullptr;
  Failure f;
  int fd = CreateSocket(ns, addr.family, SOCK_STREAM, &f);
  bool ok = fd >= 0 &&
            // Lets a restarted ztunnel rebind while its old connections sit in TIME_WAIT.
            SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", &f) &&
            // An old and a new ztunnel share the port during a handover.
            (!reuse_port || SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", &f)) &&
            (!transparent || SetTransparent(fd, addr.family, &f)) &&
            (!freebind || SetFreebind(fd, addr.family, &f));
  if (ok && bind(fd, reinterpret_cast<sockaddr*>(&addr.ss), addr.len) != 0) {
    ok = f.Set(errno, "bind", Endpoint(host, static_cast<int>(port)));
  }
  if (ok && listen(fd, static_cast<int>(backlog)) != 0) {
    ok = f.Set(errno, "listen", Endpoint(host, static_cast<int>(port)));
  }
  if (!ok) {
    if (fd >= 0) close(fd);
    ThrowFailure(env, f, ns);
    return nullptr;
  }
  return Int(env, fd);
}

// bindUdp({ netns?, host, port, reusePort? }) -> fd
// Unlike TCP, this never sets SO_REUSEADDR. On UDP that option lets a second socket
// silently take over the port instead of failing with EADDRINUSE.
napi_value BindUdp(napi_env env, napi_callback_info info) {
  napi_value o;
  std::string netns, host;
  bool has_netns, present, reuse_port;
  int64_t port;
  if (!GetOptionsArg(env, info, &o) || !GetString(env, o, "netns", false, &netns, &has_netns) ||
      !GetString(env, o, "host", true, &host, &present) ||
      !GetInt(env, o, "port", true, 0, 65535, &port, &present) ||
      !GetBool(env, o, "reusePort", &reuse_port)) {
    return nullptr;
  }
  Addr addr;
  if (!ParseAddr(host, static_cast<int>(port), &addr)) {
    ThrowType(env, "host must be a numeric IPv4 or IPv6 address: " + host);
    return nullptr;
  }
  const std::string* ns = has_netns ? &netns : nullptr;
  Failure f;
  int fd = CreateSocket(ns, addr.family, SOCK_DGRAM, &f);
  bool ok = fd >= 0 &&
            (!reuse_port || SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", &f));
  if (ok && bind(fd, reinterpret_cast<sockaddr*>(&addr.ss), addr.len) != 0) {
    ok = f.Set(errno, "bind", Endpoint(host, static_cast<int>(port)));
  }
  if (!ok) {
    if (fd >= 0) close(fd);
    ThrowFailure(env, f, ns);
    return nullptr;
  }
  return Int(env, fd);
}

// connectSocket({ netns?, family, mark?, bindAddress?, bindPort?, transparent?, freebind? })
// -> fd of an unconnected TCP socket. Node performs the connect itself (see the wrapper).
napi_value ConnectSocket(napi_env env, napi_callback_info info) {
  napi_value o;
  std::string netns, bind_address;
  bool has_netns, has_mark, has_bind_address, has_bind_port, present;
  int64_t family, mark = 0, bind_port = 0;
  bool transparent, freebind;
  if (!GetOptionsArg(env, info, &o) || !GetString(env, o, "netns", false, &netns, &has_netns) ||
      !GetInt(env, o, "family", true, 4, 6, &family, &present) ||
      !GetInt(env, o, "mark", false, 0, 4294967295.0, &mark, &has_mark) ||
      !GetString(env, o, "bindAddress", false, &bind_address, &has_bind_address) ||
      !GetInt(env, o, "bindPort", false, 0, 65535, &bind_port, &has_bind_port) ||
      !GetBool(env, o, "transparent", &transparent) || !GetBool(env, o, "freebind", &freebind)) {
    return nullptr;
  }
  if (family != 4 && family != 6) {
    ThrowType(env, "family must be 4 or 6");
    return nullptr;
  }
  int af = family == 6 ? AF_INET6 : AF_INET;
  Addr local;
  bool do_bind = has_bind_address || has_bind_port;
  if (do_bind) {
    std::string host = has_bind_address ? bind_address : (af == AF_INET6 ? "::" : "0.0.0.0");
    if (!ParseAddr(host, static_cast<int>(bind_port), &local) || local.family != af) {
      ThrowType(env, "bindAddress must be a numeric IPv" + std::to_string(family) +
                         " address: " + host);
      return nullptr;
    }
  }
  const std::string* ns = has_netns ? &netns : nullptr;
  Failure f;
  int fd = CreateSocket(ns, af, SOCK_STREAM, &f);
  bool ok = fd >= 0 &&
            // The mark must be set before connect(). conntrack makes the NAT decision on
            // the SYN, so a mark set later cannot keep the connection from being captured
            // again.
            (!has_mark ||
             SetInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(static_cast<uint32_t>(mark)),
                    "SO_MARK", &f)) &&
            // Proxied streams are latency-bound. Nagle added tens of ms on write-write-read.
            SetInt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", &f) &&
            (!transparent || SetTransparent(fd, af, &f)) && (!freebind || SetFreebind(fd, af, &f));
  // Binding with port 0 would reserve an ephemeral port for this source address at bind
  // time. The port is then chosen at connect() from the full 4-tuple, so many upstream
  // connections can share source ports.
  if (ok && do_bind && bind_port == 0) {
    ok = SetInt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT", &f);
  }
  if (ok && do_bind && bind(fd, reinterpret_cast<sockaddr*>(&local.ss), local.len) != 0) {
    std::string host = has_bind_address ? bind_address : (af == AF_INET6 ? "::" : "0.0.0.0");
    ok = f.Set(errno, "bind", Endpoint(host, static_cast<int>(bind_port)));
  }
  if (!ok) {
    if (fd >= 0) close(fd);
    ThrowFailure(env, f, ns);
    return nullptr;
  }
  return Int(env, fd);
}

// getOriginalDst(fd) -> { address, port, family }
napi_value GetOriginalDst(napi_env env, napi_callback_info info) {
  int fd;
  if (!GetFdArgs(env, info, 1, &fd, nullptr)) return nullptr;
  Failure f;
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    f.Set(errno, "getsockname", "fd " + std::to_string(fd));
    ThrowFailure(env, f, nullptr);
    return nullptr;
  }
  // An IPv4 client accepted by a dual-stack [::] listener has an AF_INET6 socket, but
  // conntrack tracked it as IPv4. So the IPv4 query is used. The kernel routes SOL_IP
  // on such a socket to the IPv4 lookup.
  bool v4 = local.ss_family == AF_INET ||
            (local.ss_family == AF_INET6 &&
             IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr));
  char text[INET6_ADDRSTRLEN] = {0};
  int port;
  if (v4) {
    sockaddr_in dst{};
    socklen_t dlen = sizeof(dst);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      f.Set(errno, "getsockopt", "SO_ORIGINAL_DST");
      ThrowFailure(env, f, nullptr);
      return nullptr;
    }
    inet_ntop(AF_INET, &dst.sin_addr, text, sizeof(text));
    port = ntohs(dst.sin_port);
  } else if (local.ss_family == AF_INET6) {
    sockaddr_in6 dst{};
    socklen_t dlen = sizeof(dst);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen) != 0) {
      f.Set(errno, "getsockopt", "IP6T_SO_ORIGINAL_DST");
      ThrowFailure(env, f, nullptr);
      return nullptr;
    }
    inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof(text));
    port = ntohs(dst.sin6_port);
  } else {
    f.Set(EAFNOSUPPORT, "getsockopt", "SO_ORIGINAL_DST");
    ThrowFailure(env, f, nullptr);
    return nullptr;
  }
  napi_value result, v;
  if (napi_create_object(env, &result) != napi_ok) return nullptr;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "address", v);
  napi_set_named_property(env, result, "port", Int(env, port));
  napi_set_named_property(env, result, "family", Int(env, v4 ? 4 : 6));
  return result;
}

// setMark(fd, mark)
napi_value SetMark(napi_env env, napi_callback_info info) {
  int fd;
  uint32_t mark;
  if (!GetFdArgs(env, info, 2, &fd, &mark)) return nullptr;
  Failure f;
  if (!SetInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(mark), "SO_MARK", &f)) {
    ThrowFailure(env, f, nullptr);
    return nullptr;
  }
  return nullptr;
}

// The four arguments of setKeepalive, range-checked (the kernel caps TCP_KEEPIDLE and
// TCP_KEEPINTVL at 32767 s and TCP_KEEPCNT at 127).
bool GetKeepaliveArgs(napi_env env, napi_callback_info info, double* d) {
  napi_value argv[4];
  size_t argc = 4;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 4) return ThrowType(env, "missing arguments");
  for (size_t i = 0; i < 4; i++) {
    napi_valuetype t;
    NAPI_OK(napi_typeof(env, argv[i], &t));
    if (t == napi_number) NAPI_OK(napi_get_value_double(env, argv[i], &d[i]));
    double max = i == 0 ? 2147483647.0 : i == 3 ? 127.0 : 32767.0;
    if (t != napi_number || !(d[i] >= 0 && d[i] <= max) || d[i] != trunc(d[i])) {
      return ThrowType(env, i == 0 ? "fd must be a non-negative integer"
                           : i == 3 ? "probes must be an integer in [0, 127]"
                                    : "keepalive times must be whole seconds in [0, 32767]");
    }
  }
  return true;
}

// setKeepalive(fd, idleSeconds, intervalSeconds, probes): SO_KEEPALIVE on; each of the three
// left at the kernel's default when 0. Node's setKeepAlive() only sets the idle time, and
// DestinationRule tcpKeepalive also names the interval and the probe count.
napi_value SetKeepalive(napi_env env, napi_callback_info info) {
  double d[4] = {0, 0, 0, 0};
  if (!GetKeepaliveArgs(env, info, d)) return nullptr;
  int fd = static_cast<int>(d[0]);
  Failure f;
  bool ok = SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE", &f) &&
            (d[1] == 0 || SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(d[1]), "TCP_KEEPIDLE", &f)) &&
            (d[2] == 0 || SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(d[2]), "TCP_KEEPINTVL", &f)) &&
            (d[3] == 0 || SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, static_cast<int>(d[3]), "TCP_KEEPCNT", &f));
  if (!ok) ThrowFailure(env, f, nullptr);
  return nullptr;
}

// getKeepalive(fd) -> { enabled, idle, interval, probes }: what the kernel holds, for tests and diagnostics.
napi_value GetKeepalive(napi_env env, napi_callback_info info) {
  int fd;
  if (!GetFdArgs(env, info, 1, &fd, nullptr)) return nullptr;
  int vals[4] = {0, 0, 0, 0};
  const int levels[4] = {SOL_SOCKET, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP};
  const int opts[4] = {SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT};
  const char* names[4] = {"SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"};
  for (int i = 0; i < 4; i++) {
    socklen_t len = sizeof(int);
    if (getsockopt(fd, levels[i], opts[i], &vals[i], &len) != 0) {
      Failure f;
      f.Set(errno, "getsockopt", names[i]);
      ThrowFailure(env, f, nullptr);
      return nullptr;
    }
  }
  napi_value result, v;
  if (napi_create_object(env, &result) != napi_ok) return nullptr;
  napi_get_boolean(env, vals[0] != 0, &v);
  napi_set_named_property(env, result, "enabled", v);
  napi_set_named_property(env, result, "idle", Int(env, vals[1]));
  napi_set_named_property(env, result, "interval", Int(env, vals[2]));
  napi_set_named_property(env, result, "probes", Int(env, vals[3]));
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenTcp", nullptr, ListenTcp, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"bindUdp", nullptr, BindUdp, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"connectSocket", nullptr, ConnectSocket, nullptr, nullptr, nullptr, napi_enumerable,
       nullptr},
      {"getOriginalDst", nullptr, GetOriginalDst, nullptr, nullptr, nullptr, napi_enumerable,
       nullptr},
      {"setMark", nullptr, SetMark, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setKeepalive", nullptr, SetKeepalive, nullptr, nullptr, nullptr, napi_enumerable,
       nullptr},
      {"getKeepalive", nullptr, GetKeepalive, nullptr, nullptr, nullptr, napi_enumerable,
       nullptr},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) {
    return nullptr;
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
