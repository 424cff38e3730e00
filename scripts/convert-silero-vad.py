#!/usr/bin/python3
# scripts/convert-silero-vad.py — convert Silero VAD (ONNX) to whisper.cpp's ggml VAD format.
#
# Usage: /usr/bin/python3 scripts/convert-silero-vad.py IN.onnx OUT.bin [--version 6.2.0]
# Needs Debian's python3-onnx (and python3-numpy, which it pulls in); run it with /usr/bin/python3,
# not a pyenv/venv python that cannot see Debian's packages.
#
# Input: dist/silero_vad_v6.onnx from the npm package @ricky0123/vad-web (0.0.31 used for the
# reference). That graph is `sr == 16000 ? If_0_then_branch : If_0_else_branch`; the weights are not
# graph initializers but Constant nodes inside the two If subgraphs. The then-branch is the 16 kHz model
# (STFT basis 258x1x256, encoder.0 with 129 input channels); the else-branch is the 8 kHz one and is
# ignored, like the `_8k` keys that whisper.cpp's own converter skips.
#
# Output layout: exactly what whisper.cpp's models/convert-silero-vad-to-ggml.py (which starts from the
# PyTorch model) writes and what src/whisper.cpp whisper_vad_init_with_params() reads. All integers are
# little-endian int32:
#   magic 0x67676d6c ("ggml"), len + "silero-16k", version major/minor/patch (6 2 0; the ONNX carries no
#   version, hence --version), n_window 512, n_context 64, n_encoder_layers 4,
#   4 x (in_channels, out_channels, kernel) = (129,128,3) (128,64,3) (64,64,3) (64,128,3),
#   lstm input 128, lstm hidden 128, final conv in 128, final conv out 1;
# then per tensor: n_dims, name length, ftype (0 = f32, 1 = f16), dims (ggml order = numpy shape
# reversed), the name, the raw data (C order).
#
# Name mapping: ONNX constant `If_0_then_branch__Inline_0__<torch name>` -> ggml tensor `_model.<torch name>`:
#   encoder.{0..3}.reparam_conv.weight  (out,in,3)  -> f16, dims [3,in,out]
#   encoder.{0..3}.reparam_conv.bias    (out,)      -> f32
#   decoder.rnn.weight_ih / weight_hh   (512,128)   -> f32, dims [128,512]
#   decoder.rnn.bias_ih / bias_hh       (512,)      -> f32
#   decoder.decoder.2.weight            (1,128,1)   -> squeezed to (128,), f16, dims [128]
#   decoder.decoder.2.bias              (1,)        -> squeezed to a scalar: n_dims 0, f32
#   stft.forward_basis_buffer           (258,1,256) -> NOT squeezed, f16, dims [256,1,258] (written last)
# Like the upstream converter, every tensor except the STFT basis is squeeze()d before its shape is
# taken, conv weights (encoder.*.weight, decoder.decoder.2.weight) and the STFT basis become float16
# (numpy astype, round-to-nearest-even), everything else stays float32.
import argparse
import struct
import sys

import numpy as np

try:
    import onnx
    from onnx import numpy_helper
except ImportError:
    sys.exit("convert-silero-vad: python module 'onnx' missing: apt-get install python3-onnx "
             "and run with /usr/bin/python3")

PREFIX = "If_0_then_branch__Inline_0__"
N_ENCODER_LAYERS = 4
ENC_IN = [129, 128, 64, 64]
ENC_OUT = [128, 64, 64, 128]
KERNEL = 3

TENSOR_ORDER = (
    [f"encoder.{i}.reparam_conv.{p}" for i in range(N_ENCODER_LAYERS) for p in ("weight", "bias")]
    + ["decoder.rnn.weight_ih", "decoder.rnn.weight_hh", "decoder.rnn.bias_ih", "decoder.rnn.bias_hh"]
    + ["decoder.decoder.2.weight", "decoder.decoder.2.bias"]
    + ["stft.forward_basis_buffer"]
)


def then_branch_constants(model):
    """Return {torch name: float32 ndarray} for the Constant nodes of the 16 kHz If branch."""
    for node in model.graph.node:
        if node.op_type != "If":
            continue
        for attr in node.attribute:
            if attr.name != "then_branch":
                continue
            out = {}
            consts = list(attr.g.initializer)
            for t in consts:
                if t.name.startswith(PREFIX):
                    out[t.name[len(PREFIX):]] = numpy_helper.to_array(t)
            for n in attr.g.node:
                if n.op_type != "Constant" or not n.output[0].startswith(PREFIX):
                    continue
                for a in n.attribute:
                    if a.name == "value":
                        out[n.output[0][len(PREFIX):]] = numpy_helper.to_array(a.t)
            return out
    raise SystemExit("convert-silero-vad: no If node with a then_branch: not a Silero VAD v5/v6 ONNX?")


def main():
    ap = argparse.ArgumentParser(description="Silero VAD ONNX -> whisper.cpp ggml VAD model")
    ap.add_argument("input", help="silero_vad ONNX file (e.g. silero_vad_v6.onnx)")
    ap.add_argument("output", help="ggml file to write")
    ap.add_argument("--version", default="6.2.0", help="Silero version stored in the header (default 6.2.0)")
    args = ap.parse_args()

    major, minor, patch = (int(x) for x in args.version.split("."))
    consts = then_branch_constants(onnx.load(args.input))
    missing = [k for k in TENSOR_ORDER if k not in consts]
    if missing:
        raise SystemExit(f"convert-silero-vad: tensors missing from {args.input}: {', '.join(missing)}")
    if consts["encoder.0.reparam_conv.weight"].shape != (ENC_OUT[0], ENC_IN[0], KERNEL):
        raise SystemExit("convert-silero-vad: encoder.0 is not 129->128: not the 16 kHz branch")

    def i32(v):
        return struct.pack("<i", v)

    with open(args.output, "wb") as f:
        f.write(i32(0x67676D6C))
        mtype = b"silero-16k"
        f.write(i32(len(mtype)) + mtype)
        f.write(i32(major) + i32(minor) + i32(patch))
        f.write(i32(512) + i32(64))                       # n_window, n_context
        f.write(i32(N_ENCODER_LAYERS))
        for i in range(N_ENCODER_LAYERS):
            f.write(i32(ENC_IN[i]) + i32(ENC_OUT[i]) + i32(KERNEL))
        f.write(i32(128) + i32(128))                      # LSTM input, hidden
        f.write(i32(128) + i32(1))                        # final conv in, out

        for key in TENSOR_ORDER:
            data = np.asarray(consts[key], dtype=np.float32)
            if key == "stft.forward_basis_buffer":
                is_f16 = True                             # kept 3-D, not squeezed
            else:
                data = data.squeeze()
                is_f16 = key.endswith("weight") and (key.startswith("encoder.") or key.startswith("decoder.decoder.2"))
            shape = list(reversed(data.shape))
            data = np.ascontiguousarray(data.astype("<f2" if is_f16 else "<f4"))
            name = ("_model." + key).encode()
            f.write(i32(len(shape)) + i32(len(name)) + i32(1 if is_f16 else 0))
            for d in shape:
                f.write(i32(d))
            f.write(name)
            f.write(data.tobytes())
            print(f"  _model.{key}: ggml {shape} {'f16' if is_f16 else 'f32'}")
    print(f"convert-silero-vad: wrote {args.output}")


if __name__ == "__main__":
    main()
