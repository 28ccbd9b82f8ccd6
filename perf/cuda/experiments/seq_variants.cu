// Experiment behind two CUDA defaults (perf/README.md, "Activation arithmetic"):
// the sequential kernel's prefetch depth D (8, 16, 32) and the cost of fp32
// division in sigmoid. Not built by CMake; compile it once per math variant:
//   nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -diag-suppress=554 \
//     -I core/include -I cells/include -I backends/cuda/include -I backends/cuda/src \
//     -I bindings/cpp/include perf/cuda/experiments/seq_variants.cu -o seq_variants
//   (variants: add "-ftz=true -prec-div=false" or "--use_fast_math"; the IEEE
//   division variant needs core/include/flashrnn/core/math.hpp's sigmoid
//   without its __CUDA_ARCH__ branch). Prints sequential and chunked-Newton
//   forward times, B = 8, for ParaGRU (fp32, bf16) and ParaLSTM (fp32).
#include <cstdio>
#include <vector>
#include <algorithm>
#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "launch.cuh"
namespace xb {
using namespace flashrnn;
#define CK(x) do { cudaError_t e_=(x); if(e_!=cudaSuccess){printf("%s: %s\n",#x,cudaGetErrorString(e_)); exit(1);} } while(0)
template <class S> __global__ void fillk(S* x, size_t n, float sc, unsigned seed){
  for(size_t i=blockIdx.x*size_t(blockDim.x)+threadIdx.x;i<n;i+=size_t(gridDim.x)*blockDim.x){
    unsigned h=unsigned(i)*2654435761u^seed; h^=h>>13; h*=0x5bd1e995u; h^=h>>15;
    x[i]=S(sc*(float(h&0xffffff)/8388608.0f-1.0f));}}
template <class F> float timeit(F f){ cudaEvent_t a,b; cudaEventCreate(&a); cudaEventCreate(&b);
  for(int i=0;i<2;i++) f(i); std::vector<float> ts;
  for(int i=0;i<7;i++){cudaEventRecord(a); f(i); cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms,a,b); ts.push_back(ms);}
  std::sort(ts.begin(),ts.end()); return ts[3]; }
template <class Cell, class S, int D> void seq(const char* dt, int H, long T){
  using R = typename cuda::detail::compute_type<S>::type;
  constexpr int K=Cell::state_dim,G=Cell::input_dim,P=Cell::param_dim; const int B=8;
  size_t nu=size_t(B)*T*G*H, ns=size_t(B)*T*K*H; S *u[3],*p,*st;
  for(int r=0;r<3;r++){CK(cudaMalloc(&u[r],nu*sizeof(S))); fillk<<<1024,256>>>(u[r],nu,1.5f,17+r);}
  CK(cudaMalloc(&p,P*H*sizeof(S))); fillk<<<64,256>>>(p,size_t(P)*H,0.9f,5); CK(cudaMalloc(&st,ns*sizeof(S)));
  auto pv=param_view<const S>(p,P,H); auto sv=batch_first(st,B,T,K,H);
  index_t lanes=index_t(B)*H;
  float ms=timeit([&](int i){
    cuda::detail::FwdArgs<S,R> a{batch_first<const S>(u[i%3],B,T,G,H),pv,{},sv,{},T,H,lanes,1,1,1,1,1,10,R(1e-5),R(1e-5),R(1),0,nullptr,nullptr,nullptr,nullptr};
    cuda::detail::sequential_forward_kernel<Cell,S,R,D,1,true><<<unsigned((lanes+63)/64),64>>>(a);});
  SolverOptions o; o.mode=Mode::newton_chunked; o.check_finite=false;
  float msc=timeit([&](int i){ cuda::forward_async<Cell,S>(batch_first<const S>(u[i%3],B,T,G,H),pv,{},sv,{},o,nullptr,nullptr);});
  double gb=(nu+ns)*sizeof(S)/1e9;
  printf("%-8s %s lanes=%-6ld T=%-5ld D=%-2d seq %.3f ms (%6.0f GB/s)  chunked %.3f ms (%6.0f GB/s)\n",Cell::name,dt,lanes,T,D,ms,gb/ms*1e3,msc,gb/msc*1e3);
  for(int r=0;r<3;r++) cudaFree(u[r]); cudaFree(p); cudaFree(st); CK(cudaDeviceSynchronize());
}
template <class Cell, class S> void all(const char* dt, int H, long T){ seq<Cell,S,8>(dt,H,T); seq<Cell,S,16>(dt,H,T); seq<Cell,S,32>(dt,H,T);}
void run(){
  for(int H: {512,1024,2048}) for(long T: {2048L,8192L}){
    all<cells::ParaGRU,float>("fp32",H,T); all<cells::ParaGRU,__nv_bfloat16>("bf16",H,T);
    all<cells::ParaLSTM,float>("fp32",H,T);}
}
}
int main(){ xb::run(); }
