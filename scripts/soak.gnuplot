# Plots a soak CSV (cmd/cesd/soak_test.go): RSS and goroutines over time.
# gnuplot -e "csv='soak.csv'; png='docs/soak.png'; title='...'" scripts/soak.gnuplot
if (!exists("title")) title = "cesd soak"
set terminal pngcairo size 1000,640 font "DejaVu Sans,11" noenhanced
set output png
set datafile separator ","
set key autotitle columnhead
set multiplot layout 2,1 title title
set grid
set xlabel "elapsed (minutes)"
set ylabel "RSS (MiB)"
set yrange [0:*]
set key below horizontal
plot csv using ($1/60):($2/1024) with lines lw 2 lc rgb "#1f77b4" title "cesd RSS (MiB)", \
     csv using ($1/60):($6/1048576) with lines lw 1 lc rgb "#9467bd" title "Go heap in use (MiB)"
set ylabel "count"
plot csv using ($1/60):3 with lines lw 2 lc rgb "#d62728" title "goroutines", \
     csv using ($1/60):4 with lines lw 2 lc rgb "#2ca02c" title "open fds", \
     csv using ($1/60):5 with steps lw 2 lc rgb "#ff7f0e" title "generations on disk"
unset multiplot
