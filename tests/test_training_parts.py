"""Stage-2 building blocks on tiny random models: mapper, part tokens, attention maps, losses."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from creaturekit.conditioning.mapper import MapperConfig, TokenMapper
from creaturekit.conditioning.text import TextConditioning
from creaturekit.conditioning.tokens import add_part_tokens, part_token, swapped_embeddings
from creaturekit.errors import CreatureKitError
from creaturekit.training.attention import install_attention_recorder
from creaturekit.training.losses import (
    attention_loss,
    diffusion_loss,
    min_snr_weights,
    part_attention,
)
from tests.tiny_sd import tiny_text_stack, tiny_unet


def test_clip_tokenizer_matches_stable_diffusion() -> None:
    from creaturekit.clip_vocab import clip_tokenizer

    tok = clip_tokenizer()
    assert len(tok) == 49408
    # Token ids of Stable Diffusion 1.5's tokenizer for these strings.
    assert tok("a photo of a bird").input_ids == [49406, 320, 1125, 539, 320, 3329, 49407]
    assert tok("a dog").input_ids == [49406, 320, 1929, 49407]


def test_mapper_shapes_absent_row_and_round_trip(tmp_path: Path) -> None:
    mapper = TokenMapper(MapperConfig(num_codes=(3, 5, 2), dim=8, depth=3))
    assert sum(isinstance(m, torch.nn.Linear) for m in mapper.projector) == 3
    assert mapper.code_embedding.num_embeddings == 4 + 6 + 3
    parts = torch.tensor([0, 1, 2, 2])
    codes = torch.tensor([2, 4, 0, mapper.absent_code(2)])
    out = mapper(parts, codes)
    assert out.shape == (4, 8)
    with pytest.raises(IndexError):
        mapper(torch.tensor([0]), torch.tensor([4]))
    mapper.save(tmp_path / "mapper.safetensors")
    again = TokenMapper.load(tmp_path / "mapper.safetensors")
    assert again.config == mapper.config
    assert torch.equal(again(parts, codes), out)


def test_mapper_load_refuses_other_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CreatureKitError, match="not a creaturekit token mapper"):
        TokenMapper.load(tmp_path / "other.safetensors")


def test_part_tokens_are_single_new_tokens_and_idempotent() -> None:
    tokenizer, encoder = tiny_text_stack()
    before = len(tokenizer)
    ids = add_part_tokens(tokenizer, encoder, 3)
    assert ids == [before, before + 1, before + 2]
    assert encoder.get_input_embeddings().num_embeddings == before + 3
    assert add_part_tokens(tokenizer, encoder, 3) == ids
    assert tokenizer(f"a {part_token(1)} bird").input_ids[2] == ids[1]


def test_encode_with_parts_swaps_only_part_positions() -> None:
    tokenizer, encoder = tiny_text_stack()
    tokenizer.model_max_length = 16
    conditioning = TextConditioning("sd", [tokenizer], [encoder])
    conditioning.add_part_tokens(3)
    mapper = TokenMapper(MapperConfig(num_codes=(4, 4, 4), dim=32, depth=2))
    prompts = [f"a {part_token(0)} {part_token(2)} bird", f"{part_token(1)} {part_token(1)}"]
    embeds = conditioning.encode(prompts, [[1, 3], [0, 2]], mapper)
    assert embeds.found == [[(2, 0), (3, 2)], [(1, 1), (2, 1)]]
    assert embeds.hidden.shape == (2, 16, 32) and embeds.pooled is None
    other = conditioning.encode(prompts, [[1, 0], [0, 2]], mapper).hidden
    assert not torch.allclose(embeds.hidden[0], other[0])  # code changed -> embedding changed
    assert torch.allclose(embeds.hidden[1], other[1])
    loss = embeds.hidden.sum()
    loss.backward()
    assert mapper.code_embedding.weight.grad is not None
    with pytest.raises(CreatureKitError, match="part tokens but"):
        conditioning.encode(prompts, [[1], [0, 2]], mapper)


def test_swapped_embeddings_follow_the_encoder_to_its_device() -> None:
    """A prompt without part tokens (the negative prompt) on a GPU text encoder once failed
    in every fit's samples and every mix: its empty replacement stayed on the CPU. A fake
    CUDA tensor (no GPU needed) goes through the same device check."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        embedding = torch.nn.Embedding(10, 4, device="cuda")
        encoder = SimpleNamespace(get_input_embeddings=lambda: embedding)
        ids = torch.zeros(2, 3, dtype=torch.long, device="cuda")
        where = torch.zeros(2, 3, dtype=torch.bool)
        with swapped_embeddings(encoder, torch.zeros(0, 4), where):
            assert embedding(ids).device.type == "cuda"
        where[1, 2] = True
        with swapped_embeddings(encoder, torch.ones(1, 4), where):
            assert embedding(ids).shape == (2, 3, 4)


def test_recorder_keeps_only_the_chosen_resolution() -> None:
    unet = tiny_unet()
    store = install_attention_recorder(unet, resolution=8)
    latents = torch.randn(2, 4, 8, 8)
    context = torch.randn(2, 10, 32)
    with torch.no_grad():
        recorded = unet(latents, torch.tensor([10, 500]), context).sample
    maps = store.maps()
    assert maps.shape == (2, 64, 10)
    assert store.layers == 3  # at 8x8: 1 layer going down, 2 coming up (SD 1.5: 2 + 3 at 16)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 64), atol=1e-5)  # softmax rows
    # The recording processor computes the same output as diffusers' default processor.
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        plain = unet(latents, torch.tensor([10, 500]), context).sample
    assert torch.allclose(recorded, plain, atol=1e-5)


def test_attention_loss_ignores_absent_parts() -> None:
    maps = torch.rand(2, 16, 10, requires_grad=True)
    occurrences = [[(1, 0), (2, 1), (3, 2)], [(1, 0), (3, 2)]]  # part 1 absent in image 1
    part_maps = part_attention(maps, occurrences, num_parts=3)
    assert part_maps.shape == (2, 3, 16)
    assert torch.equal(part_maps[1, 1], torch.zeros(16))
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :4] = 2
    masks[0, 4:, :4] = 1
    loss = attention_loss(part_maps, masks)
    loss.backward()
    assert maps.grad is not None
    assert torch.count_nonzero(maps.grad[:, :, [0, 4, 5, 6, 7, 8, 9]]) == 0  # non-part tokens
    assert torch.count_nonzero(maps.grad[1, :, 2]) == 0  # image 1 has no token at position 2


def test_attention_loss_is_lower_for_matching_maps() -> None:
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :2] = 1
    good = torch.full((1, 2, 16), 0.05)
    good[0, 1, :8] = 0.95
    good[0, 0, 8:] = 0.95
    bad = good.flip(1)
    assert attention_loss(good, masks) < attention_loss(bad, masks)


def test_attention_loss_weighs_parts() -> None:
    """A part's weight scales its own terms only: weight 1 everywhere is the plain loss,
    and a part at weight 0 adds nothing (the background's ``attn_bg_weight``)."""
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :2] = 1
    maps = torch.rand(1, 2, 16)
    plain = attention_loss(maps, masks)
    assert torch.allclose(attention_loss(maps, masks, part_weights=torch.ones(2)), plain)
    only = [attention_loss(maps, masks, part_weights=torch.eye(2)[p]) for p in range(2)]
    assert torch.allclose(only[0] + only[1], plain)
    half = attention_loss(maps, masks, part_weights=torch.tensor([0.5, 1.0]))
    assert torch.allclose(half, 0.5 * only[0] + only[1])


def test_min_snr_weights() -> None:
    ac = torch.linspace(0.999, 0.01, 1000)
    t = torch.tensor([0, 500, 999])
    w = min_snr_weights(ac, t, gamma=5.0, prediction="epsilon")
    snr = ac[t] / (1 - ac[t])
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 1 and w[2] == 1  # low-noise steps down-weighted, high-noise ones kept
    v = min_snr_weights(ac, t, gamma=5.0, prediction="v_prediction")
    assert torch.all(v < w)
    loss = diffusion_loss(torch.ones(3, 2), torch.zeros(3, 2), w)
    assert torch.isclose(loss, w.mean())
    pixels = torch.tensor([[1.0, 3.0]]).expand(3, 2)  # the second element counts 3x
    err = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loss = diffusion_loss(err, torch.zeros(3, 2), pixel_weights=pixels)
    assert torch.isclose(loss, torch.tensor([0.25, 0.75, 1.0]).mean())  # weights 0.5, 1.5


def test_training_captions_shuffle_and_template() -> None:
    import random

    from creaturekit.training.captions import training_caption

    rng = random.Random(0)
    codes = {0: 5, 2: 7, 8: 1}
    seen_orders, templated = set(), 0
    for _ in range(200):
        text, ordered = training_caption(codes, rng, "bird")
        tokens = [w for w in text.split() if w.startswith("<part_")]
        parts = [int(t[6:-1]) for t in tokens]
        assert sorted(parts) == [0, 2, 8] and ordered == [codes[p] for p in parts]
        seen_orders.add(tuple(parts))
        templated += text.endswith("bird")
    assert len(seen_orders) == 6  # every order of three parts occurs
    assert 70 < templated < 130  # about half templated
    assert training_caption(codes, random.Random(1), "bird") == training_caption(
        codes, random.Random(1), "bird"
    )


def _objective(attn_weight: float) -> tuple[object, list[torch.nn.Parameter], list[str]]:
    from diffusers import DDPMScheduler

    from creaturekit.training.objective import Objective, add_lora

    tokenizer, encoder = tiny_text_stack()
    tokenizer.model_max_length = 8
    encoder.requires_grad_(False)
    conditioning = TextConditioning("sd", [tokenizer], [encoder])
    conditioning.add_part_tokens(3)
    unet = tiny_unet()
    lora = add_lora(unet, rank=4)
    store = install_attention_recorder(unet, resolution=8)
    mapper = TokenMapper(MapperConfig(num_codes=(2, 2, 2), dim=32, depth=2))
    objective = Objective(
        conditioning,
        unet,
        DDPMScheduler(num_train_timesteps=100),
        mapper,
        store,
        attn_weight=attn_weight,
        resolution=16,
    )
    prompts = [f"{part_token(0)} {part_token(1)} {part_token(2)}"] * 4
    return objective, [*lora, *mapper.parameters()], prompts


def test_lora_targets_only_attention_projections() -> None:
    from creaturekit.training.objective import add_lora

    unet = tiny_unet()
    params = add_lora(unet, rank=2)
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert params and len(names) == len(params)
    assert all(
        "lora" in n and any(t in n for t in ("to_q", "to_k", "to_v", "to_out.0")) for n in names
    )


def test_loss_decreases_on_a_tiny_set() -> None:
    torch.manual_seed(0)
    objective, params, prompts = _objective(attn_weight=0.01)
    latents = torch.randn(4, 4, 8, 8)
    codes = [[0, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 0]]
    masks = torch.zeros(4, 4, 4, dtype=torch.long)
    masks[:, :2] = 1
    masks[:, 2:, :2] = 2

    def fixed_loss() -> float:
        with torch.no_grad():
            return objective(
                latents,
                prompts,
                codes,
                masks,  # type: ignore[operator]
                torch.Generator().manual_seed(123),
            )[1]["loss"]

    before = fixed_loss()
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for step in range(12):
        loss, logs = objective(
            latents,
            prompts,
            codes,
            masks,  # type: ignore[operator]
            torch.Generator().manual_seed(step),
        )
        assert {"loss", "loss_ldm", "loss_attn"} <= set(logs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < before


def test_attention_loss_off_skips_recording() -> None:
    objective, _, prompts = _objective(attn_weight=0.0)
    _, logs = objective(
        torch.randn(4, 4, 8, 8),
        prompts,
        [[0, 0, 0]] * 4,  # type: ignore[operator]
        torch.zeros(4, 4, 4, dtype=torch.long),
    )
    assert "loss_attn" not in logs and objective.store.layers == 0  # type: ignore[attr-defined]


def test_resume_check_reads_settings_an_older_run_lacks_as_defaults(tmp_path: Path) -> None:
    from creaturekit import fsutil
    from creaturekit.training.fit_config import FitConfig, config_dict
    from creaturekit.training.run import CONFIG_FILE, RunFolder, RunVocab

    run = RunFolder(tmp_path / "old")
    run.start(FitConfig(), RunVocab("s", "h", "creature", []), "toy")
    older = run.saved_config()
    del older["fit"]["lora_lr"]  # written before lora_lr existed
    fsutil.write_toml(run.path / CONFIG_FILE, older)
    run.check_config(FitConfig())  # the default it trained with
    with pytest.raises(CreatureKitError, match="these differ: lora_lr"):
        run.check_config(FitConfig(lora_lr=1e-4))
    assert "lora_lr" not in run.saved_config()["fit"] and config_dict(FitConfig())["lora_lr"] == 0


def test_code_similarity_tells_alike_codes_from_distinct_ones() -> None:
    """A part whose code vectors coincide is flagged (in a one-line warning); a part
    whose codes point different ways is not."""
    from creaturekit.training.distinctness import (
        code_similarity,
        distinctness_warning,
        not_distinct,
    )

    mapper = TokenMapper(MapperConfig(num_codes=(4, 3, 1), dim=8, depth=1))
    with torch.no_grad():
        mapper.projector[0].weight.copy_(torch.eye(8))
        mapper.projector[0].bias.zero_()
        mapper.part_embedding.weight.zero_()
        table = mapper.code_embedding.weight
        table[0:4] = torch.eye(8)[:4]  # part "a": four orthogonal codes
        table[5:8] = torch.ones(3, 8)  # part "b": three identical codes
    similarity = code_similarity(mapper, ["a", "b", "bg"])
    assert similarity == {"a": 0.0, "b": 1.0, "bg": None}  # one code: nothing to compare
    assert not_distinct(similarity) == {"b": "vectors' cosine 1.000"}
    # what the codes draw flags a part on its own, and adds to a part flagged already
    flagged = not_distinct(similarity, {"a": 0.62, "b": 0.5, "bg": None})
    assert flagged == {
        "a": "own code preferred 62%",
        "b": "own code preferred 50%, vectors' cosine 1.000",
    }
    assert not_distinct(similarity | {"b": 0.5}, {"a": 0.84, "b": 0.9}) == {}
    message = distinctness_warning(flagged, 200)
    assert message.startswith("The codes of a (own code preferred 62%), b (own code")
    assert "not distinct after 200 steps" in message and "fit longer" in message
    assert "\n" not in message


class _CodeReadingUNet(torch.nn.Module):
    """A denoiser that draws part 0's code exactly (a latent of value code / 10) and
    ignores every other part's code."""

    def __init__(self, scheduler: Any) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.alphas = scheduler.alphas_cumprod

    def forward(
        self, noisy: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> Any:
        a = self.alphas[t].view(-1, 1, 1, 1)
        clean = encoder_hidden_states[:, 0, 0].view(-1, 1, 1, 1) / 10
        return SimpleNamespace(sample=(noisy - a.sqrt() * clean) / (1 - a).sqrt())


class _CodesAsContext:
    """A text conditioning whose context is the prompt's codes themselves."""

    def encode(self, prompts: list[str], codes: list[list[int]], mapper: Any) -> Any:
        assert all(p == "a photo of a <part_0> <part_1> <part_2> thing" for p in prompts)
        return SimpleNamespace(hidden=torch.tensor(codes, dtype=torch.float32)[:, None])

    def unet_inputs(self, embeds: Any, sizes: Any, side: int) -> dict[str, Any]:
        return {"encoder_hidden_states": embeds.hidden}


def test_code_recognition_prefers_own_codes_only_where_the_model_draws_them() -> None:
    """The probe's known answer: part 0's own code always explains its image best (every
    comparison won), part 1's codes all draw the same (none won: a tie is no preference),
    and a part with one code, or in no probe's mask, has no figure."""
    from diffusers import DDPMScheduler

    from creaturekit.training.recognition import Probe, code_recognition

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    unet = _CodeReadingUNet(scheduler)
    mask = torch.zeros(4, 4, dtype=torch.int64)
    mask[:, 2:] = 1  # part 0 on the left, part 1 on the right, part 2 nowhere
    probes = [
        Probe(torch.full((2, 4, 4), code / 10), {0: code, 1: 3, 2: 0}, mask) for code in range(5)
    ]
    args = (_CodesAsContext(), unet, scheduler, None)
    shares = code_recognition(*args, probes, [12, 6, 1], "thing", resolution=32, batch_size=7)
    assert shares == [1.0, 0.0, None]
    alone = [Probe(p.latents, p.codes, torch.zeros(4, 4, dtype=torch.int64)) for p in probes]
    # part 1 is in no probe's mask; part 2 has two codes now but no pixels either
    assert code_recognition(*args, alone, [12, 6, 2], "thing", resolution=32) == [1.0, None, None]
