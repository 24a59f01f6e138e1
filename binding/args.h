// Argument re-checks the binding needs for memory safety. Friendly validation with
// full messages happens once in TypeScript; these guard the native side against
// anything that slips through and throw TypeError / RangeError, never crash.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace recurrent {

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

[[noreturn]] inline void throw_range(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw error;
}

inline void expect_args(const Napi::CallbackInfo& info, size_t count, const char* fn) {
  if (info.Length() < count)
    throw_type(info.Env(), std::string(fn) + ": expected " + std::to_string(count) +
                               " arguments but received " + std::to_string(info.Length()));
}

// An integer argument in [min, max].
inline int64_t int_arg(const Napi::Value& value, const char* name, int64_t min, int64_t max) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) throw_type(env, std::string(name) + " must be a number");
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::floor(v) != v)
    throw_range(env, std::string(name) + " must be an integer, received " + std::to_string(v));
  if (v < static_cast<double>(min) || v > static_cast<double>(max))
    throw_range(env, std::string(name) + " must be in [" + std::to_string(min) + ", " +
                         std::to_string(max) + "], received " + std::to_string(static_cast<int64_t>(v)));
  return static_cast<int64_t>(v);
}

inline double number_arg(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw_type(value.Env(), std::string(name) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

inline bool bool_arg(const Napi::Value& value, const char* name) {
  if (!value.IsBoolean()) throw_type(value.Env(), std::string(name) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

// An array of small non-negative integers (shapes, strides) of at most max_rank entries.
inline std::vector<int64_t> int_list_arg(const Napi::Value& value, const char* name, size_t max_rank) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw_type(env, std::string(name) + " must be an array of integers");
  Napi::Array array = value.As<Napi::Array>();
  if (array.Length() > max_rank)
    throw_range(env, std::string(name) + " has more than " + std::to_string(max_rank) + " entries");
  std::vector<int64_t> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i)
    out[i] = int_arg(array.Get(i), name, 0, int64_t{1} << 40);
  return out;
}

// A seed in [0, 2^53).
inline uint64_t seed_arg(const Napi::Value& value, const char* name) {
  return static_cast<uint64_t>(int_arg(value, name, 0, (int64_t{1} << 53) - 1));
}

}  // namespace recurrent
