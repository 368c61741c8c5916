import time, torch
from nexara.backbones.i3d import build_i3d
torch.set_num_threads(2)
m = build_i3d().eval()
x = torch.rand(2, 3, 32, 224, 224) * 2 - 1
with torch.inference_mode():
    ref = m(x).pooled
    mc = build_i3d().eval().to(memory_format=torch.channels_last_3d)
    xc = x.contiguous(memory_format=torch.channels_last_3d)
    for i in range(2):
        t = time.time(); o = mc(xc).pooled; a = time.time() - t
        t = time.time(); m(x); b = time.time() - t
        print(f"channels_last {a/2:.2f}s/window, default {b/2:.2f}s/window, max|diff| {(o-ref).abs().max():.2e}", flush=True)
