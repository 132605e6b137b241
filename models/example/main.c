/* Runs the bundled model compiled ahead of time, from plain C:
 *
 *   build/kiln compile models/resnet8_cifar.onnx -o out
 *   cc -O2 -std=c99 models/example/main.c out/resnet8_cifar.o out/kiln_runtime.c -Iout -lm -pthread -o classify
 *   ./classify out/resnet8_cifar.weights [input.f32]
 *
 * input.f32 holds the 1x3x32x32 image as raw little-endian floats; without
 * it a fixed synthetic image is used.  Prints the 10 logits and the class. */
#include <stdio.h>
#include <stdlib.h>

#include "resnet8_cifar.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s WEIGHTS [INPUT.f32]\n", argv[0]);
    return 2;
  }
  static float image[RESNET8_CIFAR_INPUT_SIZE], logits[RESNET8_CIFAR_LOGITS_SIZE];
  if (argc > 2) {
    FILE *f = fopen(argv[2], "rb");
    if (!f || fread(image, sizeof image[0], RESNET8_CIFAR_INPUT_SIZE, f) != RESNET8_CIFAR_INPUT_SIZE) {
      fprintf(stderr, "cannot read %d floats from %s\n", RESNET8_CIFAR_INPUT_SIZE, argv[2]);
      return 1;
    }
    fclose(f);
  } else {
    for (int i = 0; i < RESNET8_CIFAR_INPUT_SIZE; i++) image[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
  }
  resnet8_cifar_model *m;
  kiln_rt_status s = resnet8_cifar_create(argv[1], &m);
  if (s != KILN_RT_OK) {
    fprintf(stderr, "cannot load the model: %s\n", kiln_rt_strerror(s));
    return 1;
  }
  s = resnet8_cifar_run(m, image, logits);
  resnet8_cifar_destroy(m);
  if (s != KILN_RT_OK) {
    fprintf(stderr, "run failed: %s\n", kiln_rt_strerror(s));
    return 1;
  }
  int best = 0;
  for (int i = 0; i < RESNET8_CIFAR_LOGITS_SIZE; i++) {
    printf("%.9g\n", logits[i]);
    if (logits[i] > logits[best]) best = i;
  }
  fprintf(stderr, "class %d\n", best);
  return 0;
}
