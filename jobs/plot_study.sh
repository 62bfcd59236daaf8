#!/bin/bash
# Turns the CSV of `mpiquant study` into a PNG: error ‖XWᵀ−X̃Ŵᵀ‖²/n (solid) and the a-priori
# bound_l2 (dashed) against damp (λ = damp·mean diag H), summed over layers, one colour per
# method × rounding.   usage: bash jobs/plot_study.sh study.csv [study.png]
set -euo pipefail
csv=${1:?usage: plot_study.sh STUDY.csv [OUT.png]}
png=${2:-${csv%.csv}.png}
command -v gnuplot >/dev/null || {
  [ "$(id -u)" -eq 0 ] && apt-get install -y -qq gnuplot-nox >/dev/null
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# columns: layer,method,rounding,damp,lambda,err,rel_err,loss,bound_l2,err_floor,clipped,seconds
awk -F, -v dir="$tmp" 'NR > 1 {
    key = $2 "-" $3; err[key, $4] += $6; bound[key, $4] += $9; seen[key] = 1; damps[$4] = 1
  }
  END {
    for (k in seen) {
      f = dir "/" k ".dat"
      for (d in damps) if ((k, d) in err) print d, err[k, d], bound[k, d] | "sort -g > " f
    }
  }' "$csv"
plots=""
colour=1
for f in "$tmp"/*.dat; do
  name=$(basename "$f" .dat)
  plots+="'$f' using 1:2 with linespoints lw 2 lc $colour title '$name error', "
  plots+="'$f' using 1:3 with lines dashtype 2 lc $colour title '$name bound', "
  colour=$((colour + 1))
done
gnuplot <<GP
set terminal pngcairo size 900,600 noenhanced
set output '$png'
set logscale xy
set xlabel 'damp (lambda = damp * mean diag H)'
set ylabel 'sum over layers'
set title 'mpiquant study: error and a-priori bound vs regularization'
set key outside right
set grid
plot ${plots%, }
GP
echo "plot_study: wrote $png"
