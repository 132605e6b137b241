// kernel k1_conv1: node 'conv1' (Conv)
// launch: k1_conv1<<<dim3(4, 1, 1), dim3(4, 2, 1)>>>(b0, b1, b2, b3);
//   b0 = 'x'
//   b1 = 'conv1:0'
//   b2 = 'w'
//   b3 = 'b'
extern "C" __global__ void __launch_bounds__(8) k1_conv1(const float *__restrict__ b0, float *__restrict__ b1, const float *__restrict__ b2, const float *__restrict__ b3) {
  {
    const long long i0 = blockIdx.x;  // in [0, 4)
    {
      const long long i1 = blockIdx.y;  // in [0, 1)
      {
        const long long i2 = blockIdx.z;  // in [0, 1)
        __shared__ float s0[16];  // 'W.tile'
        __shared__ float s1[32];  // 'X.tile'
        {
          const long long i3 = threadIdx.x;  // in [0, 4)
          {
            const long long i4 = threadIdx.y;  // in [0, 2)
            float l2[4];  // 'acc'
            #pragma unroll 4
            for (long long i5 = 0; i5 < 4; i5++) {
              l2[i5] = 0x0p+0f;
            }
            long long t0 = ((i4 * 4) + i3);
            for (long long i6 = 0; i6 < 5; i6++) {
              for (long long i7 = 0; i7 < 2; i7++) {
                long long t1 = ((i7 * 8) + t0);
                long long t2 = ((i6 * 4) + (t1 / 4));
                long long t3 = ((i1 * 4) + (t1 % 4));
                if (((t3 < 3) && (t2 < 18))) {
                  s0[t1] = b2[(((i2 * 54) + (t3 * 18)) + t2)];
                } else {
                  s0[t1] = 0x0p+0f;
                }
              }
              for (long long i8 = 0; i8 < 4; i8++) {
                long long t4 = ((i8 * 8) + t0);
                long long t5 = ((i6 * 4) + (t4 / 8));
                long long t6 = ((i0 * 8) + (t4 % 8));
                long long t7 = (t5 / 9);
                long long t8 = (t5 % 9);
                long long t9 = (t6 / 25);
                long long t10 = (t6 % 25);
                long long t11 = (((t10 / 5) + (t8 / 3)) + -1);
                long long t12 = (((t10 % 5) + (t8 % 3)) + -1);
                if (((((t6 < 25) && (t5 < 18)) && ((0 <= t11) && (t11 < 5))) && ((0 <= t12) && (t12 < 5)))) {
                  s1[t4] = b0[((((((t9 * 2) + (i2 * 2)) + t7) * 25) + (t11 * 5)) + t12)];
                } else {
                  s1[t4] = 0x0p+0f;
                }
              }
              __syncthreads();
              for (long long i9 = 0; i9 < 4; i9++) {
                #pragma unroll 2
                for (long long i10 = 0; i10 < 2; i10++) {
                  #pragma unroll 2
                  for (long long i11 = 0; i11 < 2; i11++) {
                    l2[((i10 * 2) + i11)] = (l2[((i10 * 2) + i11)] + (s0[(((i9 * 4) + (i4 * 2)) + i10)] * s1[(((i9 * 8) + (i3 * 2)) + i11)]));
                  }
                }
              }
              __syncthreads();
            }
            #pragma unroll 2
            for (long long i12 = 0; i12 < 2; i12++) {
              #pragma unroll 2
              for (long long i13 = 0; i13 < 2; i13++) {
                long long t13 = (((i1 * 4) + (i4 * 2)) + i12);
                long long t14 = (((i0 * 8) + (i3 * 2)) + i13);
                if (((t13 < 3) && (t14 < 25))) {
                  long long t15 = ((i2 * 3) + t13);
                  b1[(((((t14 / 25) * 3) + t15) * 25) + (t14 % 25))] = (l2[((i12 * 2) + i13)] + b3[t15]);
                }
              }
            }
          }
        }
      }
    }
  }
}
