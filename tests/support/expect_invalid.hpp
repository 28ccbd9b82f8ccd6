// A check shared by the CPU test files: a call must fail with InvalidArgument
// whose message names what it should.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "catch.hpp"
#include "flashrnn/core/error.hpp"

namespace flashrnn_test {

/// Runs `call`, which must throw InvalidArgument whose message contains every
/// one of `needles`.
inline void expect_invalid(const std::function<void()>& call, std::vector<std::string> needles) {
  std::string msg;
  bool threw = false;
  try {
    call();
  } catch (const flashrnn::InvalidArgument& e) {
    threw = true;
    msg = e.what();
  }
  INFO("message: " << msg);
  REQUIRE(threw);
  for (const std::string& n : needles) {
    INFO("expected in message: " << n);
    CHECK(msg.find(n) != std::string::npos);
  }
}

}  // namespace flashrnn_test
