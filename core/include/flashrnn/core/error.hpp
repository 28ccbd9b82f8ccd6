// Error types thrown by every public entry point.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace flashrnn {

/// Base of all FlashRNN exceptions.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An argument has the wrong shape, stride, value or location. The message
/// names the entry point, the argument, what was expected and what was given.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// Newton did not converge (or produced non-finite iterates) and the options
/// asked for an error rather than a fallback.
class ConvergenceError : public Error {
 public:
  using Error::Error;
};

/// A backend (CUDA, HIP, Kokkos) reported a runtime failure.
class BackendError : public Error {
 public:
  using Error::Error;
};

namespace detail {

// Message formatting without iostreams: an ostream formats through the global
// C++ locale, which a host application may change (digit grouping) and which
// breaks when the process holds two libstdc++ copies (seen: a segfault
// formatting a double inside a Python extension next to PyTorch 2.11).
inline void append(std::string& s, const char* x) { s += x; }
inline void append(std::string& s, const std::string& x) { s += x; }
inline void append(std::string& s, char x) { s += x; }
inline void append(std::string& s, bool x) { s += x ? "true" : "false"; }
template <class T>
std::enable_if_t<std::is_integral<T>::value> append(std::string& s, T x) {
  s += std::to_string(x);
}
template <class T>
std::enable_if_t<std::is_floating_point<T>::value> append(std::string& s, T x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(x));
  s += buf;
}

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::string s;
  (append(s, parts), ...);
  return s;
}

/// Throws InvalidArgument "<where>: argument '<arg>': expected <expected>, got <actual>".
template <class Expected, class Actual>
[[noreturn]] void fail_argument(const char* where, const char* arg, const Expected& expected,
                                const Actual& actual) {
  throw InvalidArgument(
      concat(where, ": argument '", arg, "': expected ", expected, ", got ", actual));
}

}  // namespace detail
}  // namespace flashrnn
