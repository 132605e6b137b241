/* Training curves for `kiln train`: OUTDIR/curves.png, two panels (loss,
 * and accuracy or Dice, per epoch; training solid, validation dashed)
 * drawn into an RGB buffer with axes, ticks, tick labels and a legend (a
 * built-in 5x7 pixel font), and written with libpng. */
#ifndef KILN_TRAIN_PLOT_H
#define KILN_TRAIN_PLOT_H

#include <stddef.h>

#include "../ir/diag.h"

enum { KILN_PLOT_WIDTH = 960, KILN_PLOT_HEIGHT = 400 };

/* n epochs of metrics (NaN: not measured, e.g. no validation set);
 * metric_name "accuracy" or "dice" (accuracies in %, Dice in 0..1 shown
 * as %).  Writes path atomically.  0, or -1 with d set. */
int kiln_plot_curves(const char *path, int n, const double *train_loss, const double *val_loss,
                     const double *train_acc, const double *val_acc, const char *metric_name, kiln_diag *d);
/* The PNG bytes only (malloc'd), for tests and the writer above. */
int kiln_plot_curves_png(int n, const double *train_loss, const double *val_loss, const double *train_acc,
                         const double *val_acc, const char *metric_name, unsigned char **png, size_t *len, kiln_diag *d);

/* Pieces for other plots (kiln explain's overlays): text in the 5x7 font
 * (digits, '.', '-', '+', '%', some lower-case letters; scaled by two,
 * black) at pixel (x, y) of a w x h RGB canvas, and the canvas as PNG
 * bytes (malloc'd); -1 when out of memory. */
void kiln_plot_text(unsigned char *rgb, int w, int h, int x, int y, const char *s);
int kiln_plot_png(const unsigned char *rgb, int w, int h, unsigned char **png, size_t *len);
/* kiln attack's robustness plot: one curve y(x)
 * (n points, x ascending, y scaled by yscale for display) in one panel
 * of KILN_PLOT_WIDTH/2+... pixels with axes, ticks, tick labels, a title
 * and an x-axis label.  0, or -1 with d set. */
int kiln_plot_xy_png(int n, const double *x, const double *y, double yscale, const char *title, const char *xlabel,
                     unsigned char **png, size_t *len, kiln_diag *d);

#endif
