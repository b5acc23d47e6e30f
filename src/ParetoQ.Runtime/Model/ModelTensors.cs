namespace ParetoQ.Runtime.Model;

/// <summary>What a tensor is in the decoder: the loader and every model writer name and shape tensors through
/// it.</summary>
public enum TensorRole
{
    Embedding, AttentionNorm, Query, Key, Value, Output, FfnNorm, Gate, Up, Down, FinalNorm, Head,
}

/// <summary>One tensor a config needs: its Hugging Face LLaMA-style name and its (rows, cols); norms are (1,
/// dim).</summary>
public sealed record TensorSpec(string Name, TensorRole Role, int Rows, int Cols)
{
    public bool IsNorm => Role is TensorRole.AttentionNorm or TensorRole.FfnNorm or TensorRole.FinalNorm;

    /// <summary>The attention and MLP linear layers: the weights ParetoQ quantizes.</summary>
    public bool IsProjection => Role is TensorRole.Query or TensorRole.Key or TensorRole.Value or TensorRole.Output
        or TensorRole.Gate or TensorRole.Up or TensorRole.Down;
}

/// <summary>The tensor table of the one decoder architecture: names, shapes and the order writers emit them
/// in.</summary>
public static class ModelTensors
{
    public static string Name(TensorRole role, int layer = -1) => role switch
    {
        TensorRole.Embedding => "model.embed_tokens.weight",
        TensorRole.FinalNorm => "model.norm.weight",
        TensorRole.Head => "lm_head.weight",
        TensorRole.AttentionNorm => $"model.layers.{layer}.input_layernorm.weight",
        TensorRole.Query => $"model.layers.{layer}.self_attn.q_proj.weight",
        TensorRole.Key => $"model.layers.{layer}.self_attn.k_proj.weight",
        TensorRole.Value => $"model.layers.{layer}.self_attn.v_proj.weight",
        TensorRole.Output => $"model.layers.{layer}.self_attn.o_proj.weight",
        TensorRole.FfnNorm => $"model.layers.{layer}.post_attention_layernorm.weight",
        TensorRole.Gate => $"model.layers.{layer}.mlp.gate_proj.weight",
        TensorRole.Up => $"model.layers.{layer}.mlp.up_proj.weight",
        TensorRole.Down => $"model.layers.{layer}.mlp.down_proj.weight",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "unknown tensor role"),
    };

    /// <summary>(rows, cols) of a role under a config.</summary>
    public static (int Rows, int Cols) Shape(ModelConfig c, TensorRole role) => role switch
    {
        TensorRole.Embedding or TensorRole.Head => (c.VocabSize, c.HiddenSize),
        TensorRole.AttentionNorm or TensorRole.FfnNorm or TensorRole.FinalNorm => (1, c.HiddenSize),
        TensorRole.Query => (c.QueryDim, c.HiddenSize),
        TensorRole.Key or TensorRole.Value => (c.KvDim, c.HiddenSize),
        TensorRole.Output => (c.HiddenSize, c.QueryDim),
        TensorRole.Gate or TensorRole.Up => (c.IntermediateSize, c.HiddenSize),
        TensorRole.Down => (c.HiddenSize, c.IntermediateSize),
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "unknown tensor role"),
    };

    private static readonly TensorRole[] LayerRoles =
    [
        TensorRole.AttentionNorm, TensorRole.Query, TensorRole.Key, TensorRole.Value, TensorRole.Output,
        TensorRole.FfnNorm, TensorRole.Gate, TensorRole.Up, TensorRole.Down,
    ];

    /// <summary>Every tensor the config needs, in file order: embedding, each layer, final norm, then the head when
    /// untied.</summary>
    public static IEnumerable<TensorSpec> For(ModelConfig c)
    {
        TensorSpec Spec(TensorRole role, int layer = -1)
        {
            var (rows, cols) = Shape(c, role);
            return new TensorSpec(Name(role, layer), role, rows, cols);
        }
        yield return Spec(TensorRole.Embedding);
        for (int i = 0; i < c.NumLayers; i++)
            foreach (var role in LayerRoles) yield return Spec(role, i);
        yield return Spec(TensorRole.FinalNorm);
        if (!c.TieWordEmbeddings) yield return Spec(TensorRole.Head);
    }
}
