"""The submission interface of DESIGN.md: which module the handouts put each public name in.

Graders look names up here first and then in the submission's other modules (real submissions
move things around); ``reference/`` and ``student_template/`` must define exactly these names.
"""

from __future__ import annotations

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

#: Stands for a handout parameter without a default: never equal to a value, so never dropped.
REQUIRED = object()

#: The handout's keyword parameters, in order, with their defaults, for the names whose calls
#: graders adapt when a submission spells them differently (e.g. ``CNN()`` without ``n``).
HANDOUT_PARAMETERS: dict[str, tuple[tuple[str, object], ...]] = {
    "CNN": (("n", 4), ("kernel_size", 3)),
    "CNNChannel": (("n", 4), ("kernel_size", 3)),
    # Public submissions drop is_concat (always concatenating) or reorder the keywords.
    "GraphAttentionLayer": (
        ("in_features", REQUIRED),
        ("out_features", REQUIRED),
        ("n_heads", REQUIRED),
        ("is_concat", True),
        ("dropout", 0.6),
        ("alpha", 0.2),
    ),
    # UvA A2: LSTM(lstm_hidden_dim, embedding_size) is often written with other names or positionally.
    "LSTM": (("lstm_hidden_dim", REQUIRED), ("embedding_size", REQUIRED)),
    "TextGenerationModel": (("vocabulary_size", REQUIRED), ("embedding_size", 256), ("lstm_hidden_dim", 1024)),
}
