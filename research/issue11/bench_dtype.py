import time, torch, numpy as np
from nexara.backbones.i3d import build_i3d
torch.set_num_threads(2)
m = build_i3d().eval()
x = torch.rand(2, 3, 32, 224, 224) * 2 - 1
with torch.inference_mode():
    ref = m(x).pooled
    for name, ctx, xx, mm in [("f32", torch.autocast("cpu", enabled=False), x, m),
                     ("bf16-autocast", torch.autocast("cpu", dtype=torch.bfloat16), x, m)]:
        with ctx:
            mm(xx); t = time.time(); o = mm(xx).pooled.float(); dt = time.time() - t
        print(name, f"{dt/2:.2f}s/window", "cos", torch.nn.functional.cosine_similarity(o, ref).min().item(), flush=True)
    mc = m.to(memory_format=torch.channels_last_3d)
    xc = x.contiguous(memory_format=torch.channels_last_3d)
    mc(xc); t = time.time(); o = mc(xc).pooled; print("f32 channels_last_3d", f"{(time.time()-t)/2:.2f}s/window", flush=True)
