"""``ge2e``: the pretrained GE2E speaker encoder shipped in the resemblyzer wheel, layer by layer.

Front end as resemblyzer's ``wav_to_mel_spectrogram`` (librosa melspectrogram: 40 Slaney mel bands
of the power spectrum, 25 ms Hann window, 10 ms hop, centred, zero padded; not log-scaled),
re-implemented in torch so it batches and runs on GPU. Layers: lstm1..lstm3 (100 Hz) and
embedding = L2-normalised ReLU(linear(last valid frame of lstm3)), exactly VoiceEncoder.forward.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from layerlab.models.base import LayerInfo, LayeredModel, frames_centered
from layerlab.models.errors import CheckpointError
from layerlab.models.fetch import load_torch_file

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
HIDDEN = 256
NUM_LSTM_LAYERS = 3


def resemblyzer_weights_path() -> Path:
    """Path of resemblyzer's ``pretrained.pt``, found without importing resemblyzer (librosa, webrtcvad)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("ge2e: the resemblyzer package is not installed (its wheel ships pretrained.pt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise CheckpointError(f"ge2e: {path} is missing from the resemblyzer installation")
    return path


class MelPowerFrontEnd(torch.nn.Module):
    """Batched torch version of resemblyzer's mel front end: [B, S] -> [B, T, 40], T = S // 160 + 1."""

    def __init__(self) -> None:
        super().__init__()
        import torchaudio

        fb = torchaudio.functional.melscale_fbanks(
            n_freqs=N_FFT // 2 + 1,
            f_min=0.0,
            f_max=SAMPLE_RATE / 2,
            n_mels=N_MELS,
            sample_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_fb", fb, persistent=False)  # [freqs, mels]
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wavs, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window,
            center=True, pad_mode="constant", return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, freqs, T]
        return torch.matmul(power.transpose(1, 2), self.mel_fb)


class GE2EModel(LayeredModel):
    """Resemblyzer's 3-layer LSTM GE2E encoder, split into single-layer LSTMs to expose every layer."""

    padding_invariant = True  # zero padding after the end changes neither valid STFT frames nor a causal LSTM

    def __init__(self, state: dict[str, torch.Tensor], spec: str = "ge2e", device: str | torch.device | None = None):
        super().__init__()
        self.spec = spec
        self.sample_rate = SAMPLE_RATE
        self.min_samples = 1
        self.front_end = MelPowerFrontEnd()
        self.lstms = torch.nn.ModuleList(
            torch.nn.LSTM(N_MELS if k == 0 else HIDDEN, HIDDEN, num_layers=1, batch_first=True)
            for k in range(NUM_LSTM_LAYERS)
        )
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)
        self._load(state)
        self.layers = [LayerInfo(f"lstm{k + 1}", HIDDEN, SAMPLE_RATE / HOP) for k in range(NUM_LSTM_LAYERS)]
        self.layers.append(LayerInfo("embedding", HIDDEN, None))
        self._finish_init(device)

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        try:
            for k, lstm in enumerate(self.lstms):
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(lstm, f"{kind}_l0").data.copy_(state[f"lstm.{kind}_l{k}"])
            self.linear.weight.data.copy_(state["linear.weight"])
            self.linear.bias.data.copy_(state["linear.bias"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.spec}: GE2E weights do not match the 3x256 LSTM encoder ({exc})") from exc

    def _layers(self, wavs: torch.Tensor, lengths: torch.Tensor):
        x = self.front_end(wavs)
        n = frames_centered(lengths, HOP)
        hidden = []
        for lstm in self.lstms:
            x, _ = lstm(x)
            hidden.append(x)
        last = x[torch.arange(x.shape[0], device=x.device), n - 1]
        emb = torch.relu(self.linear(last))
        emb = emb / torch.linalg.vector_norm(emb, dim=1, keepdim=True)
        hidden.append(emb[:, None, :])
        return hidden, [n] * NUM_LSTM_LAYERS + [torch.ones_like(n)]

    def mel(self, wavs: torch.Tensor) -> torch.Tensor:
        """The front end alone ([B, S] -> [B, T, 40]), for checks against resemblyzer."""
        with torch.no_grad():
            return self.front_end(wavs.to(self.device, torch.float32))


def load_ge2e(arg: str = "", spec: str = "ge2e", device: str | torch.device | None = None) -> GE2EModel:
    """Build the pretrained GE2E model from resemblyzer's weights file."""
    path = resemblyzer_weights_path()
    ckpt = load_torch_file(path, "ge2e weights")
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise CheckpointError(f"ge2e weights {path}: expected a dict with 'model_state'")
    return GE2EModel(ckpt["model_state"], spec=spec, device=device)
