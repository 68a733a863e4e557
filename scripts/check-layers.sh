#!/bin/sh
# The report formats and `watch` format the resolved view (analyzer/view.h)
# and nothing else: none of them may include, directly or through another
# header, the model, the ring reader, the symbolizer or the suppressions.
# Fails naming the file and the header that breaks the rule.
set -eu
cc=${CC:-cc}
status=0
for f in analyzer/report_*.c; do
    deps=$($cc -std=gnu11 -D_GNU_SOURCE -MM "$f")
    for forbidden in model.h shm_reader.h symbolize.h suppress.h dump.h kernel.h; do
        case " $deps " in
        *"/$forbidden"* | *" $forbidden"*)
            echo "check-layers: $f includes $forbidden (renderers see only view.h)" >&2
            status=1
            ;;
        esac
    done
done
[ $status -eq 0 ] && echo "check-layers: $(ls analyzer/report_*.c | wc -l) renderers include only the view"
exit $status
