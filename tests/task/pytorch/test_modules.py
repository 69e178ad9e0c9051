"""Tests of the PyTorch building blocks MLPBlock, Conv2DBlock and LSTMBlock."""

from __future__ import annotations

import copy
import doctest
import itertools
import math
import pickle

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from multiml.task.pytorch.modules import _utils, conv2d, lstm, mlp
from multiml.task.pytorch.modules._utils import LastDimBatchNorm, get_activation
from multiml.task.pytorch.modules.conv2d import Conv2DBlock
from multiml.task.pytorch.modules.lstm import LSTMBlock
from multiml.task.pytorch.modules.mlp import MLPBlock

CONV_SPEC = [
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}),
    ("maxpooling2d", {"kernel_size": 2}),
    ("conv2d", {"out_channels": 6, "kernel_size": 3}),
]


def _seeded(factory, seed=0):
    torch.manual_seed(seed)
    return factory()


# Each entry: (factory, input tensor factory, expected output shape, SGD learning rate).
BLOCKS = {
    "mlp": (
        lambda: MLPBlock([5, 16, 3], batch_norm=True, dropout=0.1),
        lambda: torch.randn(8, 5),
        (8, 3),
        0.05,
    ),
    "conv": (
        lambda: Conv2DBlock(CONV_SPEC, batch_norm=True, input_shape=(2, 8, 8), layers_mlp=[3]),
        lambda: torch.randn(8, 2, 8, 8),
        (8, 3),
        0.05,
    ),
    "lstm": (
        lambda: LSTMBlock([4, 6, 3], batch_norm=True, dropout=0.1, bidirectional=True),
        lambda: torch.randn(8, 5, 4),
        (8, 6),
        0.5,  # a bounded recurrent model learns a random target more slowly
    ),
}


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- generic


@pytest.mark.parametrize("name", sorted(BLOCKS))
class TestEveryBlock:
    def test_is_module_with_expected_output_shape(self, name):
        factory, make_input, out_shape, _ = BLOCKS[name]
        block = _seeded(factory)
        assert isinstance(block, nn.Module)
        assert block(make_input()).shape == out_shape

    def test_deterministic_under_manual_seed(self, name):
        factory, *_ = BLOCKS[name]
        assert _state_equal(_seeded(factory, 3), _seeded(factory, 3))
        assert not _state_equal(_seeded(factory, 3), _seeded(factory, 4))

    def test_pickle_and_deepcopy_keep_weights_and_outputs(self, name):
        factory, make_input, *_ = BLOCKS[name]
        block = _seeded(factory).eval()
        x = make_input()
        expected = block(x)
        for clone in (pickle.loads(pickle.dumps(block)), copy.deepcopy(block)):
            assert type(clone) is type(block)
            assert _state_equal(clone, block)
            assert torch.equal(clone.eval()(x), expected)
            # independent parameters, not shared storage
            assert all(
                p.data_ptr() != q.data_ptr()
                for p, q in zip(clone.parameters(), block.parameters(), strict=True)
            )

    def test_state_dict_round_trip(self, name):
        factory, make_input, *_ = BLOCKS[name]
        source = _seeded(factory, 1)
        source.train()
        source(make_input())  # moves batch-norm running statistics away from defaults
        target = _seeded(factory, 2)
        assert not _state_equal(source, target)
        target.load_state_dict(source.state_dict())
        assert _state_equal(source, target)
        x = make_input()
        assert torch.equal(source.eval()(x), target.eval()(x))

    def test_sgd_reduces_loss_and_every_parameter_gets_a_gradient(self, name):
        factory, make_input, out_shape, lr = BLOCKS[name]
        torch.manual_seed(0)
        block = factory()
        x = make_input()
        y = torch.randn(out_shape)
        opt = torch.optim.SGD(block.parameters(), lr=lr)
        block.eval()  # no dropout noise, so the loss comparison is exact
        with torch.no_grad():
            before = nn.functional.mse_loss(block(x), y).item()
        block.train()
        for _ in range(30):
            opt.zero_grad()
            loss = nn.functional.mse_loss(block(x), y)
            loss.backward()
            for pname, param in block.named_parameters():
                assert param.grad is not None, pname
            opt.step()
        block.eval()
        with torch.no_grad():
            after = nn.functional.mse_loss(block(x), y).item()
        assert after < 0.8 * before


@pytest.mark.parametrize("module", [_utils, mlp, conv2d, lstm])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------- activations


class TestGetActivation:
    def test_by_exact_and_case_insensitive_name(self):
        assert type(get_activation("ReLU")) is nn.ReLU
        assert type(get_activation("leakyrelu")) is nn.LeakyReLU
        assert type(get_activation("Identity")) is nn.Identity
        assert type(get_activation(None)) is nn.Identity

    def test_by_class_instance_and_mapping(self):
        assert type(get_activation(nn.Tanh)) is nn.Tanh
        given = nn.LeakyReLU(0.3)
        got = get_activation(given)
        assert type(got) is nn.LeakyReLU and got.negative_slope == 0.3
        assert got is not given
        mapped = get_activation({"name": "LeakyReLU", "negative_slope": 0.2})
        assert mapped.negative_slope == 0.2
        from_yaml = get_activation(OmegaConf.create({"name": "ELU", "alpha": 0.5}))
        assert type(from_yaml) is nn.ELU and from_yaml.alpha == 0.5

    def test_unknown_name_suggests_and_lists_valid_names(self):
        with pytest.raises(ValueError, match="activation='Relux'") as info:
            get_activation("Relux")
        message = str(info.value)
        assert "did you mean 'ReLU'" in message
        assert "Tanh" in message and "Sigmoid" in message

    def test_other_errors(self):
        with pytest.raises(TypeError, match=r"not an nn\.Module subclass"):
            get_activation(dict)
        with pytest.raises(TypeError, match="not supported"):
            get_activation(3)
        with pytest.raises(ValueError, match="'name' key"):
            get_activation({"negative_slope": 0.1})
        with pytest.raises(TypeError, match="cannot construct LeakyReLU"):
            get_activation({"name": "LeakyReLU", "slope": 0.1})
        with pytest.raises(TypeError, match="cannot construct Linear"):
            get_activation("Linear")


# --------------------------------------------------------------------------- MLPBlock


class TestMLPBlock:
    @pytest.mark.parametrize(
        ("kwargs", "sizes"),
        [
            ({"layers": [4, 2]}, [4, 2]),
            ({"layers": [4, 8, 8, 2]}, [4, 8, 8, 2]),
            ({"layers": [8], "input_shape": 4, "output_shape": 2}, [4, 8, 2]),
            ({"layers": (8,), "input_shape": (4,), "output_shape": [2]}, [4, 8, 2]),
            ({"layers": [], "input_shape": (4,), "output_shape": (2,)}, [4, 2]),
            ({"layers": None, "input_shape": 4, "output_shape": 2}, [4, 2]),
            ({"layers": OmegaConf.create([4, 16, 2])}, [4, 16, 2]),
        ],
    )
    def test_sizes_and_output_shapes(self, kwargs, sizes):
        block = MLPBlock(**kwargs)
        assert block.layer_sizes == sizes
        assert (block.in_features, block.out_features) == (sizes[0], sizes[-1])
        linears = [m for m in block if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == list(itertools.pairwise(sizes))
        assert block(torch.randn(7, sizes[0])).shape == (7, sizes[-1])
        assert block(torch.randn(7, 3, 2, sizes[0])).shape == (7, 3, 2, sizes[-1])

    def test_does_not_mutate_callers_list(self):
        layers = [8]
        MLPBlock(layers, input_shape=4, output_shape=2)
        assert layers == [8]

    def test_activation_after_hidden_and_last(self):
        block = MLPBlock([3, 5, 5, 2], activation="Tanh", activation_last="Sigmoid")
        kinds = [type(m) for m in block]
        assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear, nn.Sigmoid]
        out = block(torch.randn(4, 3))
        assert bool(((out > 0) & (out < 1)).all())

    def test_activation_instance_is_copied_per_layer(self):
        prelu = nn.PReLU()
        block = MLPBlock([3, 5, 5, 2], activation=prelu)
        prelus = [m for m in block if isinstance(m, nn.PReLU)]
        assert len(prelus) == 2
        assert all(p is not prelu for p in prelus)
        assert prelus[0].weight.data_ptr() != prelus[1].weight.data_ptr()
        assert len(list(block.parameters())) == 6 + 2  # 3 Linear (w, b) + 2 PReLU weights

    def test_activation_by_class(self):
        block = MLPBlock([3, 5, 2], activation=nn.GELU, activation_last=nn.Softplus)
        assert [type(m) for m in block][1::2] == [nn.GELU, nn.Softplus]

    def test_batch_norm_presence_and_order(self):
        with_bn = MLPBlock([3, 5, 5, 2], batch_norm=True)
        kinds = [type(m) for m in with_bn]
        assert kinds.count(LastDimBatchNorm) == 2
        assert all(isinstance(m, nn.BatchNorm1d) for m in with_bn if type(m) is LastDimBatchNorm)
        assert kinds[:3] == [nn.Linear, LastDimBatchNorm, nn.ReLU]
        assert kinds[-2:] == [nn.Linear, nn.Identity]  # never after the last Linear
        assert not any(isinstance(m, nn.BatchNorm1d) for m in MLPBlock([3, 5, 5, 2]))

    def test_batch_norm_on_sequence_input_normalises_the_last_axis(self):
        torch.manual_seed(0)
        block = MLPBlock([3, 4, 2], batch_norm=True, activation="Identity")
        x = torch.randn(6, 5, 3) * 4 + 2
        hidden = block.batchnorm0(block.linear0(x))
        flat = hidden.reshape(-1, 4)
        assert torch.allclose(flat.mean(0), torch.zeros(4), atol=1e-5)
        assert torch.allclose(flat.std(0, unbiased=False), torch.ones(4), atol=1e-3)
        assert block(x).shape == (6, 5, 2)

    def test_dropout_only_when_asked(self):
        assert not any(isinstance(m, nn.Dropout) for m in MLPBlock([3, 5, 2]))
        block = MLPBlock([3, 5, 5, 2], dropout=0.25)
        drops = [m for m in block if isinstance(m, nn.Dropout)]
        assert len(drops) == 2 and all(d.p == 0.25 for d in drops)

    def test_initialize_uses_kaiming_with_gain_of_following_activation(self):
        torch.manual_seed(0)
        block = MLPBlock([400, 300, 200], activation="ReLU", activation_last="Identity")
        for linear, gain in ((block.linear0, math.sqrt(2.0)), (block.linear1, 1.0)):
            bound = gain * math.sqrt(3.0 / linear.in_features)
            assert linear.weight.abs().max() <= bound
            assert linear.weight.abs().max() > 0.99 * bound
            assert torch.count_nonzero(linear.bias) == 0

    def test_initialize_false_keeps_torch_default(self):
        torch.manual_seed(0)
        block = MLPBlock([10, 20], initialize=False)
        torch.manual_seed(0)
        reference = nn.Linear(10, 20)
        assert torch.equal(block.linear0.weight, reference.weight)
        assert torch.equal(block.linear0.bias, reference.bias)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"layers": [4]}, ValueError, "at least 2 sizes"),
            ({"layers": []}, ValueError, "at least 2 sizes"),
            ({"layers": None, "input_shape": 3}, ValueError, "at least 2 sizes"),
            ({"layers": [4, 0]}, ValueError, r"layers\[1\]=0"),
            ({"layers": [4, -2]}, ValueError, r"layers\[1\]=-2"),
            ({"layers": [4, 2.5]}, TypeError, r"layers\[1\]=2.5"),
            ({"layers": [4, True]}, TypeError, r"layers\[1\]=True"),
            ({"layers": "42"}, TypeError, "layers='42'"),
            ({"layers": [4], "input_shape": (3, 4)}, ValueError, r"input_shape=\(3, 4\)"),
            ({"layers": [4], "output_shape": (1, 2)}, ValueError, r"output_shape=\(1, 2\)"),
            ({"layers": [4, 2], "activation": "Nope"}, ValueError, "activation='Nope'"),
            ({"layers": [4, 2], "activation_last": "Nope"}, ValueError, "activation_last="),
            ({"layers": [4, 2], "dropout": 1.0}, ValueError, "dropout=1.0"),
        ],
    )
    def test_construction_errors(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            MLPBlock(**kwargs)

    def test_wrong_feature_count_is_a_clear_error(self):
        block = MLPBlock([4, 2])
        with pytest.raises(ValueError, match=r"4 features on the last axis; got shape \(3, 5\)"):
            block(torch.randn(3, 5))

    def test_batch_norm_rejects_unbatched_input(self):
        block = MLPBlock([4, 3, 2], batch_norm=True)
        with pytest.raises(ValueError, match="batched input"):
            block(torch.randn(4))

    def test_last_dim_batch_norm_matches_batchnorm1d_on_flattened_rows(self):
        torch.manual_seed(0)
        ours, reference = LastDimBatchNorm(3), nn.BatchNorm1d(3)
        x = torch.randn(4, 6, 3)
        assert torch.allclose(ours(x), reference(x.reshape(-1, 3)).reshape(4, 6, 3))
        assert torch.allclose(ours.running_mean, reference.running_mean)
        assert torch.allclose(ours.running_var, reference.running_var)


# --------------------------------------------------------------------------- Conv2DBlock


class TestConv2DBlock:
    def test_feature_map_shape_and_output_shape(self):
        block = Conv2DBlock(CONV_SPEC, input_shape=(2, 10, 10))
        assert block.in_channels == 2
        assert block.output_shape == (6, 3, 3)
        assert block(torch.randn(3, 2, 10, 10)).shape == (3, 6, 3, 3)

    def test_flatten_and_mlp_head(self):
        flat = Conv2DBlock(CONV_SPEC, input_shape=(2, 10, 10), flatten=True)
        assert flat.output_shape == (54,)
        assert flat(torch.randn(3, 2, 10, 10)).shape == (3, 54)
        head = Conv2DBlock(
            CONV_SPEC,
            input_shape=(2, 10, 10),
            layers_mlp=[16, 5],
            mlp_args={"activation": "Tanh", "batch_norm": True},
        )
        assert head.output_shape == (5,)
        assert isinstance(head.mlp, MLPBlock)
        assert head.mlp.layer_sizes == [54, 16, 5]
        assert isinstance(head.mlp.activation0, nn.Tanh)
        assert head(torch.randn(3, 2, 10, 10)).shape == (3, 5)

    def test_channels_only_input_shape_or_explicit_in_channels(self):
        spec = [("conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3})]
        block = Conv2DBlock(spec)
        assert block.output_shape is None
        assert block(torch.randn(2, 3, 9, 7)).shape == (2, 4, 7, 5)
        by_channels = Conv2DBlock(CONV_SPEC, input_shape=2)
        assert by_channels.output_shape is None
        assert by_channels(torch.randn(1, 2, 10, 10)).shape == (1, 6, 3, 3)

    def test_in_channels_chain_through_convs(self):
        block = Conv2DBlock(CONV_SPEC, input_shape=(2, 10, 10))
        assert (block.conv0.in_channels, block.conv0.out_channels) == (2, 4)
        assert (block.conv2.in_channels, block.conv2.out_channels) == (4, 6)

    def test_yaml_style_config_and_bare_type_strings(self):
        cfg = OmegaConf.create(
            {
                "layers_conv2d": [
                    ["conv2d", {"out_channels": 4, "kernel_size": [3, 3], "padding": 1}],
                    "dropout2d",
                    ["MaxPool2d", {"kernel_size": 2}],
                    ["adaptiveavgpooling2d", {"output_size": 1}],
                ],
                "input_shape": [1, 8, 8],
                "activation": {"name": "LeakyReLU", "negative_slope": 0.1},
                "layers_mlp": [3],
            }
        )
        block = Conv2DBlock(**cfg)
        assert block.conv0.kernel_size == (3, 3)
        assert isinstance(block.dropout1, nn.Dropout2d)
        assert isinstance(block.activation0, nn.LeakyReLU)
        assert block.activation0.negative_slope == 0.1
        assert block.output_shape == (3,)
        assert block(torch.randn(2, 1, 8, 8)).shape == (2, 3)

    def test_batch_norm_default_and_per_layer_overrides(self):
        spec = [
            ("conv2d", {"out_channels": 4, "kernel_size": 3}),
            ("conv2d", {"out_channels": 4, "kernel_size": 3, "batch_norm": False,
                        "activation": "Identity"}),
        ]  # fmt: skip
        block = Conv2DBlock(spec, input_shape=1, batch_norm=True, activation="ELU")
        kinds = [type(m) for m in block]
        assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ELU, nn.Conv2d, nn.Identity]
        plain = Conv2DBlock(spec[:1], input_shape=1)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in plain)

    def test_shape_probe_leaves_batch_norm_and_mode_untouched(self):
        block = Conv2DBlock(CONV_SPEC, input_shape=(2, 10, 10), batch_norm=True)
        assert block.training
        assert torch.count_nonzero(block.batchnorm0.running_mean) == 0
        assert int(block.batchnorm0.num_batches_tracked) == 0

    def test_initialize_kaiming_and_zero_bias(self):
        torch.manual_seed(0)
        spec = [("conv2d", {"out_channels": 64, "kernel_size": 5})]
        block = Conv2DBlock(spec, input_shape=16)
        fan_in = 16 * 5 * 5
        bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
        assert block.conv0.weight.abs().max() <= bound
        assert block.conv0.weight.abs().max() > 0.99 * bound
        assert torch.count_nonzero(block.conv0.bias) == 0

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"layers_conv2d": []}, ValueError, "no 'conv2d' layer"),
            ({"layers_conv2d": [("maxpool2d", {"kernel_size": 2})]}, ValueError, "no 'conv2d'"),
            ({"layers_conv2d": "conv2d"}, TypeError, "expected a list"),
            ({"layers_conv2d": [("conv3d", {})]}, ValueError, r"unknown layer type 'conv3d'.*"),
            ({"layers_conv2d": [("conv2d", 8)]}, TypeError, r"layers_conv2d\[0\]"),
            (
                {"layers_conv2d": [("conv2d", {"out_channels": 4, "kernel_size": 3})]},
                ValueError,
                "in_channels is unknown",
            ),
            (
                {
                    "layers_conv2d": [("conv2d", {"in_channels": 3, "out_channels": 4,
                                                  "kernel_size": 3})],
                    "input_shape": (2, 8, 8),
                },
                ValueError,
                "in_channels=3 but the input to this layer has 2 channels",
            ),
            (
                {"layers_conv2d": [("conv2d", {"out_channels": 4})], "input_shape": 1},
                TypeError,
                r"layers_conv2d\[0\] \('conv2d'\): cannot build Conv2d",
            ),
            (
                {
                    "layers_conv2d": [("conv2d", {"out_channels": 4, "kernel_size": 3}),
                                      ("maxpool2d", {"kernel_size": 2, "activation": "ReLU"})],
                    "input_shape": 1,
                },
                ValueError,
                r"only apply to 'conv2d'",
            ),
            ({"layers_conv2d": CONV_SPEC, "input_shape": (2, 3, 3)}, ValueError,
             r"input_shape=\(2, 3, 3\) does not fit"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": (2, 10)}, ValueError,
             r"input_shape=\(2, 10\)"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": 2, "layers_mlp": [3]}, ValueError,
             "layers_mlp needs input_shape"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": (2, 8, 8), "layers_mlp": []},
             ValueError, "layers_mlp is empty"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": (2, 8, 8), "layers_mlp": [3],
              "mlp_args": {"input_shape": 5}}, ValueError, "mlp_args may not set"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": 2, "mlp_args": {"dropout": 0.1}},
             ValueError, "without layers_mlp"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": (2, 8, 8), "layers_mlp": [3],
              "mlp_args": {"activation": "Nope"}}, ValueError, "layers_mlp/mlp_args"),
            ({"layers_conv2d": CONV_SPEC, "input_shape": 2, "activation": "Nope"}, ValueError,
             "activation='Nope'"),
        ],
    )  # fmt: skip
    def test_construction_errors(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            Conv2DBlock(**kwargs)

    def test_wrong_input_is_a_clear_error(self):
        block = Conv2DBlock(CONV_SPEC, input_shape=2)
        with pytest.raises(ValueError, match=r"C=2; got shape \(1, 3, 8, 8\)"):
            block(torch.randn(1, 3, 8, 8))
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            block(torch.randn(2, 8, 8))

    def test_does_not_mutate_callers_spec(self):
        spec = [("conv2d", {"out_channels": 4, "kernel_size": 3, "activation": "Tanh"})]
        before = copy.deepcopy(spec)
        Conv2DBlock(spec, input_shape=1)
        assert spec == before


# --------------------------------------------------------------------------- LSTMBlock


class TestLSTMBlock:
    @pytest.mark.parametrize(
        ("kwargs", "x_shape", "out_shape"),
        [
            ({"layers": [3, 8]}, (4, 7, 3), (4, 8)),
            ({"layers": [3, 8, 5]}, (4, 7, 3), (4, 5)),
            ({"layers": [3, 8, 5], "output": "sequence"}, (4, 7, 3), (4, 7, 5)),
            ({"layers": [3, 8, 5], "bidirectional": True}, (4, 7, 3), (4, 10)),
            ({"layers": [3, 8], "bidirectional": True, "output": "sequence"}, (4, 7, 3),
             (4, 7, 16)),
            ({"layers": [3, 8], "batch_first": False, "output": "sequence"}, (7, 4, 3),
             (7, 4, 8)),
            ({"layers": [3, 8], "batch_first": False}, (7, 4, 3), (4, 8)),
            ({"layers": [8, 5], "input_shape": (7, 3)}, (4, 7, 3), (4, 5)),
            ({"layers": [8], "input_shape": 3}, (4, 7, 3), (4, 8)),
        ],
    )  # fmt: skip
    def test_output_shapes(self, kwargs, x_shape, out_shape):
        block = LSTMBlock(**kwargs)
        assert block(torch.randn(x_shape)).shape == out_shape
        assert block.out_features == out_shape[-1]

    def test_stacking_feeds_doubled_width_when_bidirectional(self):
        block = LSTMBlock([3, 8, 5], bidirectional=True)
        assert [(m.input_size, m.hidden_size) for m in block.lstms] == [(3, 8), (16, 5)]
        assert all(m.bidirectional and m.num_layers == 1 for m in block.lstms)

    def test_last_is_final_step_of_sequence(self):
        torch.manual_seed(0)
        block = LSTMBlock([3, 6, 4]).eval()
        x = torch.randn(2, 9, 3)
        last = block(x)
        block.output = "sequence"
        assert torch.allclose(last, block(x)[:, -1])

    def test_bidirectional_last_joins_forward_end_and_backward_start(self):
        torch.manual_seed(0)
        block = LSTMBlock([3, 4], bidirectional=True, output="sequence").eval()
        x = torch.randn(2, 9, 3)
        seq = block(x)
        block.output = "last"
        last = block(x)
        assert torch.allclose(last[:, :4], seq[:, -1, :4])
        assert torch.allclose(last[:, 4:], seq[:, 0, 4:])

    def test_between_layers_batch_norm_activation_dropout(self):
        block = LSTMBlock([3, 6, 6, 4], activation="Tanh", batch_norm=True, dropout=0.2)
        assert len(block.between) == 2
        for glue in block.between:
            assert [type(m) for m in glue] == [LastDimBatchNorm, nn.Tanh, nn.Dropout]
        assert isinstance(block.activation_last, nn.Identity)
        plain = LSTMBlock([3, 6, 4])
        assert [type(m) for m in plain.between[0]] == [nn.Identity]
        assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())

    def test_activation_last_applies_to_output(self):
        block = LSTMBlock([3, 6], activation_last="Sigmoid", output="sequence")
        out = block(torch.randn(2, 5, 3))
        assert bool(((out > 0) & (out < 1)).all())

    def test_initialize_forget_bias_and_orthogonal_recurrent_weights(self):
        torch.manual_seed(0)
        block = LSTMBlock([3, 6], bidirectional=True)
        layer = block.lstms[0]
        for suffix in ("", "_reverse"):
            bias_ih = getattr(layer, f"bias_ih_l0{suffix}")
            assert torch.equal(bias_ih[6:12], torch.ones(6))
            assert torch.count_nonzero(bias_ih[:6]) + torch.count_nonzero(bias_ih[12:]) == 0
            assert torch.count_nonzero(getattr(layer, f"bias_hh_l0{suffix}")) == 0
            for gate in getattr(layer, f"weight_hh_l0{suffix}").detach().split(6):
                assert torch.allclose(gate @ gate.T, torch.eye(6), atol=1e-5)

    def test_initialize_false_keeps_torch_default(self):
        torch.manual_seed(0)
        block = LSTMBlock([3, 6], initialize=False)
        torch.manual_seed(0)
        reference = nn.LSTM(3, 6, batch_first=True)
        assert _state_equal(block.lstms[0], reference)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"layers": [3]}, ValueError, "at least 2 sizes"),
            ({"layers": None, "input_shape": 3}, ValueError, "at least 2 sizes"),
            ({"layers": [3, 0]}, ValueError, r"layers\[1\]=0"),
            ({"layers": [3, 4], "output": "mean"}, ValueError, "output='mean'.*last, sequence"),
            ({"layers": [4], "input_shape": (2, 3, 4)}, ValueError, r"input_shape=\(2, 3, 4\)"),
            ({"layers": [3, 4], "activation": "Nope"}, ValueError, "activation='Nope'"),
            ({"layers": [3, 4], "dropout": -0.1}, ValueError, "dropout=-0.1"),
        ],
    )
    def test_construction_errors(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            LSTMBlock(**kwargs)

    def test_wrong_input_is_a_clear_error(self):
        block = LSTMBlock([3, 4])
        with pytest.raises(ValueError, match=r"\(N, T, F\) input with F=3; got shape \(2, 5, 4\)"):
            block(torch.randn(2, 5, 4))
        with pytest.raises(ValueError, match=r"got shape \(5, 3\)"):
            block(torch.randn(5, 3))
