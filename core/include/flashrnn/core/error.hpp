// Error types thrown by every public entry point.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

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

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
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
