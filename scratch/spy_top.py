import sys, collections
self_c, incl = collections.Counter(), collections.Counter()
total = 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n); total += n
    frames = stack.split(";")
    self_c[frames[-1]] += n
    for f in set(frames):
        incl[f] += n
k = int(sys.argv[2]) if len(sys.argv) > 2 else 30
print("total", total)
print("--- self")
for f, n in self_c.most_common(k): print(f"{100*n/total:5.1f}% {f[:150]}")
print("--- inclusive")
for f, n in incl.most_common(k*2): print(f"{100*n/total:5.1f}% {f[:150]}")
