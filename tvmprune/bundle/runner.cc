/*!
 * \file runner.cc
 * \brief tvmprune-run: run a `tvmprune compile` module on a board with only libc / libstdc++.
 *
 *   tvmprune-run DIR/model.so --input in.npy [--output out.npy] [--repeat N] [--threads T]
 *
 * Loads model.so into the Relax VM of the bundled libtvm_runtime.so, feeds it the float32 NCHW
 * array of in.npy (its shape must equal meta.json's input_shape when meta.json sits beside
 * model.so), writes the first output to out.npy and prints one JSON line with the latency of
 * `main` over N runs after one warm-up run: median, spread (inter-quartile range), min, max.
 * Exit status: 0 ok, 2 bad arguments or input, 1 the model failed.
 */
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/runtime/tensor.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "npy.h"

namespace tvmprune {
namespace ffi = tvm::ffi;

/*! \brief A user error: printed as one "error:" line, exit status 2. */
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model, input, output;
  int repeat = 10;
  int threads = 0;  // 0: TVM's default (TVM_NUM_THREADS or the cores)
};

const char* kUsage =
    "usage: tvmprune-run DIR/model.so --input in.npy [--output out.npy] [--repeat N] [--threads T]";

int PositiveInt(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    int v = std::stoi(value, &used);
    if (used == value.size() && v >= 1) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + " needs a whole number >= 1, got '" + value + "'");
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value\n" + kUsage);
      return argv[++i];
    };
    if (a == "--input") o.input = value();
    else if (a == "--output") o.output = value();
    else if (a == "--repeat") o.repeat = PositiveInt(a, value());
    else if (a == "--threads") o.threads = PositiveInt(a, value());
    else if (a == "-h" || a == "--help") throw UsageError(kUsage);
    else if (!a.empty() && a[0] == '-') throw UsageError("unknown option " + a + "\n" + kUsage);
    else if (o.model.empty()) o.model = a;
    else throw UsageError("more than one model given ('" + o.model + "', '" + a + "')\n" + kUsage);
  }
  if (o.model.empty() || o.input.empty()) throw UsageError(kUsage);
  return o;
}

/*! \brief meta.json's input_shape when meta.json sits beside model.so; empty if there is none. */
std::vector<int64_t> ExpectedInputShape(const std::string& model_path) {
  size_t slash = model_path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : model_path.substr(0, slash);
  std::ifstream in(dir + "/meta.json");
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  ffi::String error;
  ffi::json::Value meta = ffi::json::Parse(text.str(), &error);
  if (!error.empty()) throw UsageError(dir + "/meta.json is damaged (" + std::string(error) + "); compile again");
  std::vector<int64_t> shape;
  for (const ffi::Any& d : meta.cast<ffi::json::Object>().at("input_shape").cast<ffi::json::Array>()) {
    shape.push_back(d.cast<int64_t>());
  }
  return shape;
}

/*! \brief Load model.so and initialise its Relax VM on the CPU; returns the VM's `main`. */
ffi::Function LoadMain(const std::string& model_path) {
  // dlopen searches the library path for a name without '/': make "model.so" mean ./model.so
  std::string path = model_path.find('/') == std::string::npos ? "./" + model_path : model_path;
  ffi::Module lib = ffi::Module::LoadFromFile(path);
  ffi::Optional<ffi::Function> load = lib->GetFunction("vm_load_executable");
  if (!load) throw UsageError(model_path + " is not a Relax VM module (no vm_load_executable)");
  ffi::Module vm = (*load)().cast<ffi::Module>();
  constexpr int kDLCPUType = 1, kPooledAllocator = 2;
  vm->GetFunction("vm_initialization").value()(kDLCPUType, 0, kPooledAllocator);
  ffi::Optional<ffi::Function> main_fn = vm->GetFunction("main");
  if (!main_fn) throw UsageError(model_path + " has no function 'main'");
  return *main_fn;
}

tvm::runtime::Tensor ToTensor(const NpyArray& arr) {
  tvm::runtime::Tensor t = tvm::runtime::Tensor::Empty(ffi::Shape(arr.shape), DLDataType{kDLFloat, 32, 1},
                                                        DLDevice{kDLCPU, 0});
  t.CopyFromBytes(arr.data.data(), arr.data.size() * sizeof(float));
  return t;
}

/*! \brief The first output of `main` (a Tensor, or element 0 of a tuple of them) as an array. */
NpyArray FirstOutput(const ffi::Any& out) {
  tvm::runtime::Tensor t;
  if (auto tensor = out.try_cast<tvm::runtime::Tensor>()) {
    t = *tensor;
  } else {
    t = out.cast<ffi::Array<ffi::Any>>()[0].cast<tvm::runtime::Tensor>();
  }
  if (t->dtype.code != kDLFloat || t->dtype.bits != 32) throw std::runtime_error("the model's output is not float32");
  NpyArray arr;
  arr.shape.assign(t->shape, t->shape + t->ndim);
  arr.data.resize(static_cast<size_t>(NumElements(arr.shape)));
  t.CopyToBytes(arr.data.data(), arr.data.size() * sizeof(float));
  return arr;
}

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * (v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

std::string LatencyJson(const Options& o, const NpyArray& in, const NpyArray& out, const std::vector<double>& ms) {
  std::ostringstream js;
  js.precision(6);
  js << "{\"model\": \"" << o.model << "\", \"input_shape\": \"" << ShapeString(in.shape)
     << "\", \"output_shape\": \"" << ShapeString(out.shape) << "\", \"repeats\": " << ms.size()
     << ", \"threads\": " << (o.threads ? std::to_string(o.threads) : "null")
     << ", \"median_ms\": " << Quantile(ms, 0.5) << ", \"spread_ms\": " << Quantile(ms, 0.75) - Quantile(ms, 0.25)
     << ", \"min_ms\": " << Quantile(ms, 0.0) << ", \"max_ms\": " << Quantile(ms, 1.0) << "}";
  return js.str();
}

int Run(const Options& o) {
  // Read before the runtime's thread pool starts (at the first parallel kernel).
  if (o.threads) setenv("TVM_NUM_THREADS", std::to_string(o.threads).c_str(), 1);
  NpyArray input;
  try {
    input = ReadNpy(o.input);
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
  std::vector<int64_t> expected = ExpectedInputShape(o.model);
  if (!expected.empty() && expected != input.shape) {
    throw UsageError(o.input + " has shape " + ShapeString(input.shape) + " but the model takes " +
                     ShapeString(expected) + " (float32, NCHW; from meta.json)");
  }
  ffi::Function main_fn = LoadMain(o.model);
  tvm::runtime::Tensor x = ToTensor(input);
  NpyArray output = FirstOutput(main_fn(x));  // warm-up run
  std::vector<double> ms;
  for (int i = 0; i < o.repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    ffi::Any out = main_fn(x);
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  if (!o.output.empty()) WriteNpy(o.output, output);
  std::cout << LatencyJson(o, input, output, ms) << std::endl;
  return 0;
}

}  // namespace tvmprune

int main(int argc, char** argv) {
  try {
    return tvmprune::Run(tvmprune::ParseArgs(argc, argv));
  } catch (const tvmprune::UsageError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
}
