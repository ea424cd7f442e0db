#!/bin/sh
# Runs inside the vivid VM (benches/v4l2_vivid.sh boots it): the producer's
# CPU per frame capturing from vivid in USERPTR mode (the driver writes into
# ring slots) and in MMAP mode (one copy per frame), alternating, at the
# sizes given as "WxH@FPS:FRAMES" arguments. Prints one JSON line per run.
D=/run/camux
mkdir -p $D
for spec in "$@"; do
	size=${spec%@*}; rest=${spec#*@}; fps=${rest%:*}; frames=${rest#*:}
	w=${size%x*}; h=${size#*x}
	for round in 1 2; do
		for io in userptr mmap; do
			line=$(camux publish --dir $D --stream b$io$w --v4l2 /dev/video0 \
				--format YUYV --width "$w" --height "$h" --fps "$fps" --io $io \
				--frames "$frames" 2>/dev/null | grep '"stopped"')
			echo "@@bench {\"width\":$w,\"height\":$h,\"round\":$round,\"stopped\":$line}"
		done
	done
done
