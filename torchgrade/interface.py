"""The submission interface of DESIGN.md: which module the handouts put each public name in.

Graders look names up here first and then in the submission's other modules (real submissions
move things around); ``reference/`` and ``student_template/`` must define exactly these names.
:data:`HANDOUT_PARAMETERS` and :data:`PARAMETER_ALIASES` say how calls of some of them are bound by
name to the signature a submission gives them (:mod:`torchgrade.engine.binding`).
"""

from __future__ import annotations

from dataclasses import dataclass

MODULES: dict[str, tuple[str, ...]] = {
    "shoes": (
        "load_shoes",
        "generate_same_pair",
        "generate_different_pair",
        "CNN",
        "CNNChannel",
        "get_accuracy",
        "train_model",
    ),
    "answers": (
        "receptive_field_1d",
        "cnn_receptive_fields",
        "cnn_param_count",
        "cnn_channel_param_count",
        "lstm_param_count",
        "conv1d_forward",
        "conv1d_kernel_grad",
        "gnn_sum_update",
        "gnn_graph_output",
        "gnn_param_grads",
        "message_passing",
        "sigmoid_derivative",
        "mlp_gradients",
        "ridge_solution",
        "batchnorm_forward",
        "mean_only_batchnorm_backward",
    ),
    "gnn": (
        "normalize_adjacency",
        "GraphConvolution",
        "GNN",
        "GraphAttentionLayer",
        "GAT",
        "circulant_adjacency",
        "circulant_matrix",
        "dft_matrix",
        "circulant_eigenvalues",
        "MoleculeMLP",
        "MoleculeGNN",
    ),
    "unet": ("Down", "Up", "UNet", "mean_iou"),
    "lstm": ("LSTM", "TextGenerationModel", "sequence_loss", "beam_search"),
    "attention": (
        "sigmoid_rnn_jacobian",
        "sigmoid_rnn_jacobian_bound",
        "linear_attention",
        "relative_attention",
        "conv1d_as_attention",
        "max_pool_as_attention",
    ),
    "conv_numpy": (
        "conv2d_forward",
        "conv2d_backward",
        "max_pool2d_forward",
        "max_pool2d_backward",
        "relu_forward",
        "relu_backward",
        "linear_forward",
        "linear_backward",
    ),
    "robustness": (
        "gaussian_noise",
        "gaussian_blur",
        "contrast",
        "jpeg",
        "corruption_error",
        "relative_corruption_error",
    ),
}

#: public name -> module, e.g. ``{"CNN": "shoes"}``.
NAME_TO_MODULE: dict[str, str] = {name: module for module, names in MODULES.items() for name in names}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Stands for a handout parameter without a default: the submission must receive its value.
REQUIRED = _Required()


@dataclass(frozen=True)
class HandoutParameter:
    """One parameter of a handout's function or class, as graders pass it.

    Attributes:
        name: the handout's name for it (the grader's keyword).
        default: the handout's default, or :data:`REQUIRED`.
        positional: the grader passes it by position and the submission may name it anything
            (``train_model(model, train_data, valid_data, ...)``); only a leading run of a
            handout's parameters can be positional.
        droppable: may be left out of the call when the submission has no parameter for it even
            though the handout gives it no default (one with a default always may).
    """

    name: str
    default: object = REQUIRED
    positional: bool = False
    droppable: bool = False


def _handout(*parameters: tuple) -> tuple[HandoutParameter, ...]:
    return tuple(p if isinstance(p, HandoutParameter) else HandoutParameter(*p) for p in parameters)


#: The handout's parameters, in order, for the names whose calls graders bind by name when a
#: submission spells them differently (:mod:`torchgrade.engine.binding`): each keyword reaches the
#: submitted parameter of the same name or of one of its :data:`PARAMETER_ALIASES`, goes through the
#: submission's ``**kwargs``, or is left out where the submission has no such parameter and the
#: handout gives it a default (``CNN()`` with n and the kernel size fixed inside). A value is never
#: moved to another position. This is data the assignment owns, like :data:`MODULES`.
HANDOUT_PARAMETERS: dict[str, tuple[HandoutParameter, ...]] = {
    "CNN": _handout(("n", 4), ("kernel_size", 3)),
    "CNNChannel": _handout(("n", 4), ("kernel_size", 3)),
    "train_model": _handout(
        ("model", REQUIRED, True),
        ("train_data", REQUIRED, True),
        ("valid_data", REQUIRED, True),
        ("batch_size", 32),
        ("learning_rate", 0.001),
        ("weight_decay", 0.0),
        ("max_iters", 1000),
        ("max_epoch", 30),
        ("checkpoint_path", None),
    ),
    # Public submissions drop is_concat (always concatenating) or reorder and rename the keywords.
    "GraphAttentionLayer": _handout(
        ("in_features",),
        ("out_features",),
        ("n_heads",),
        ("is_concat", True),
        ("dropout", 0.6),
        ("alpha", 0.2),
    ),
    # UvA A2: LSTM(lstm_hidden_dim, embedding_size) is often written with other names.
    "LSTM": _handout(("lstm_hidden_dim",), ("embedding_size",)),
    "TextGenerationModel": _handout(("vocabulary_size",), ("embedding_size", 256), ("lstm_hidden_dim", 1024)),
}

#: Other names real submissions give a handout parameter, most likely first, for the callables of
#: :data:`HANDOUT_PARAMETERS` (keyed by the handout's parameter name). A name is matched as written,
#: then ignoring case and underscores (``numEpochs`` is ``num_epochs``). Data the assignment owns:
#: add the spellings its students use. A positional parameter's aliases only tell a submission whose
#: positional parameters are in another order (``train_model(model, valid_data, train_data)``).
PARAMETER_ALIASES: dict[str, tuple[str, ...]] = {
    # shoes: CNN, CNNChannel, train_model
    "n": ("n_channels", "num_channels", "channels", "n_filters", "num_filters"),
    "kernel_size": ("kernel", "k", "ksize", "kernel_dim", "filter_size"),
    "train_data": ("train_set", "train_loader", "train", "training_data", "train_dataset", "data_train"),
    "valid_data": (
        "val_data",
        "valid_set",
        "val_set",
        "valid_loader",
        "val_loader",
        "valid",
        "val",
        "validation_data",
        "valid_dataset",
        "val_dataset",
        "data_valid",
        "data_val",
    ),
    "batch_size": ("bs", "batchsize"),
    "learning_rate": ("lr",),
    "weight_decay": ("wd",),
    "max_iters": ("num_iters", "n_iters", "iterations", "max_iter", "num_iterations", "iters", "n_iterations"),
    "max_epoch": ("num_epochs", "epochs", "n_epochs", "max_epochs", "num_epoch", "n_epoch"),
    "checkpoint_path": ("checkpoint", "ckpt_path", "save_path", "path", "checkpoint_dir", "ckpt"),
    # CSC413 A4: GraphAttentionLayer
    "in_features": ("in_dim", "input_dim", "nfeat", "in_channels", "in_feats"),
    "out_features": ("out_dim", "output_dim", "out_channels", "out_feats"),
    "n_heads": ("num_heads", "heads", "n_head", "nheads"),
    "is_concat": ("concat",),
    "dropout": ("dropout_rate", "dropout_prob", "p_dropout", "drop_prob"),
    "alpha": ("leaky_relu_negative_slope", "negative_slope", "leaky_relu_slope", "lrelu_alpha"),
    # UvA A2: LSTM, TextGenerationModel
    "lstm_hidden_dim": ("hidden_dim", "num_hidden", "lstm_num_hidden", "hidden_size", "n_hidden"),
    "embedding_size": ("embedding_dim", "embed_dim", "embed_size", "input_size", "input_dim", "n_input"),
    "vocabulary_size": ("vocab_size", "vocabulary", "n_vocab", "num_classes"),
}
