using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;

namespace ParetoQ.Runtime.Conversion;

/// <summary>The families of Hugging Face checkpoints the converter maps (REFERENCE.md §2–3).</summary>
public enum SourceFamily
{
    /// <summary><c>model_type</c> mobilellm: MobileLLM v1 with share_embedding / layer_sharing.</summary>
    MobileLlm,
    /// <summary><c>model_type</c> llama: LlamaForCausalLM, including ParetoQ's checkpoints (with
    /// <c>w_bits</c>).</summary>
    Llama,
    /// <summary><c>model_type</c> llama4_text: MobileLLM-Pro (local/global attention, NoPE layers, QK-norm).</summary>
    MobileLlmPro,
    /// <summary>A llama2.c checkpoint (<see cref="Interchange.Llama2cCheckpoint"/>): LLaMA with adjacent-pair
    /// RoPE.</summary>
    Llama2c,
    /// <summary>A GGUF file of llama.cpp's <c>llama</c> architecture (<see cref="Interchange.GgufCheckpoint"/>).</summary>
    Gguf,
    /// <summary>A .pq file, requantized (<see cref="Interchange.PqCheckpoint"/>).</summary>
    Pq,
}

/// <summary>A Hugging Face config.json mapped onto <see cref="ModelConfig"/>, with what the converter needs beside
/// it.</summary>
/// <param name="WBits">ParetoQ's <c>w_bits</c>: 0 = ternary, 1–4 bits, ≥ 16 = full precision; null when absent.</param>
/// <param name="Notes">Facts the user should see in the conversion report (e.g. a capped context).</param>
public sealed record HfConfig(
    SourceFamily Family,
    ModelConfig Config,
    int? WBits,
    int? BosTokenId,
    IReadOnlyList<int> EosTokenIds,
    int? PadTokenId,
    IReadOnlyList<string> Notes)
{
    public const string FileName = "config.json";

    // Fields that describe the training run or the Python class, never the computation.
    private static readonly string[] Informational =
    [
        "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "_name_or_path", "auto_map",
        "initializer_range", "use_cache", "attention_dropout", "pretraining_tp", "bos_token_id", "eos_token_id",
            "pad_token_id",
        "output_router_logits", "router_aux_loss_coef", "router_jitter_noise",
    ];

    public static HfConfig Read(string directory)
    {
        string path = Path.Combine(directory, FileName);
        ModelConfigException Error(string problem) => new(path, problem);
        byte[] bytes = InputFile.ReadAll(path, 1 << 20, Error);
        using var doc = StrictJson.Parse(bytes, 16, "config.json", Error);
        return Parse(doc.RootElement, path);
    }

    public static HfConfig Parse(JsonElement root, string path)
    {
        ModelConfigException Error(string problem) => new(path, problem);
        var c = new StrictJson(root, "", Error);
        string modelType = c.String("model_type", 64);
        var family = modelType switch
        {
            "mobilellm" => SourceFamily.MobileLlm,
            "llama" => SourceFamily.Llama,
            "llama4_text" => SourceFamily.MobileLlmPro,
            _ => throw Error($"model_type '{modelType}' is not supported (mobilellm, llama, llama4_text)"),
        };
        var notes = new List<string>();

        if (c.OptionalString("hidden_act", 32) is { } act
            && act != "silu") throw Error($"hidden_act '{act}' is not implemented (only silu: SwiGLU)");
        if (c.OptionalBool("attention_bias",
            false)) throw Error("attention_bias true is not implemented (the decoder has no biases)");
        if (c.OptionalBool("mlp_bias",
            false)) throw Error("mlp_bias true is not implemented (the decoder has no biases)");
        if (c.Present("quantization_config")) throw Error("quantization_config is not implemented: convert the unquantized or ParetoQ-snapped weights");

        int vocab = c.Int("vocab_size", 1, 1 << 24);
        int hidden = c.Int("hidden_size", 1, 1 << 16);
        int layers = c.Int("num_hidden_layers", 1, 4096);
        int heads = c.Int("num_attention_heads", 1, 4096);
        int kvHeads = c.OptionalInt("num_key_value_heads", 1, 4096, heads);
        int headDim = c.OptionalInt("head_dim", 2, 1024, hidden / heads);
        int ffn = c.Int("intermediate_size", 1, 1 << 18);
        int maxPositions = c.OptionalInt("max_position_embeddings", 1, 1 << 24, 2048);
        // HF's LlamaConfig defaults, which transformers itself applies when a field is absent.
        float eps = (float)c.OptionalDouble("rms_norm_eps", 1e-12, 0.1, 1e-6);
        double theta = c.OptionalDouble("rope_theta", 1, 1e12, 10000);
        bool tie = c.OptionalBool("tie_word_embeddings", family == SourceFamily.MobileLlmPro);
        // Older configs name the scaling type "type"; the fields are otherwise those of the .pq schema.
        Llama3RopeScaling? scaling = null;
        if (c.OptionalObject("rope_scaling") is { } rs)
        {
            string type = rs.Present("rope_type") ? rs.String("rope_type", 32) : rs.String("type", 32);
            rs.Ignore("type");
            scaling = ModelConfig.ParseRopeScaling(rs, type, Error);
        }
        int? wBits = c.Present("w_bits") ? c.Int("w_bits", 0, 32) : null;
        if (wBits is > 4 and < 16) throw Error($"w_bits {wBits} is not a ParetoQ bit width (0 = ternary, 1, 2, 3, 4, or ≥ 16 for full precision)");

        int repeat = 1;
        var layerTypes = Enumerable.Repeat(AttentionKind.Global, layers).ToArray();
        var ropeLayers = Enumerable.Repeat(true, layers).ToArray();
        int window = 0;
        bool qkNorm = false;
        AttentionTemperatureTuning? tuning = null;
        var layout = RopeLayout.RotateHalf;
        string architecture = "mobilellm";

        switch (family)
        {
            case SourceFamily.MobileLlm:
                tie |= c.OptionalBool("share_embedding", false);
                // MobileLLM-LS: each block runs twice in a row with the same weights (immediate block-wise sharing).
                if (c.OptionalBool("layer_sharing", false)) repeat = 2;
                break;
            case SourceFamily.Llama:
                break;
            case SourceFamily.MobileLlmPro:
            {
                architecture = "mobilellm-pro";
                layout = RopeLayout.Interleaved;
                // Llama-4's dense MLP width; MobileLLM-Pro has no experts.
                ffn = c.OptionalInt("intermediate_size_mlp", 1, 1 << 18, ffn);
                if (c.OptionalInt("num_local_experts", 0, 1 << 16,
                    0) > 1) throw Error("num_local_experts > 1: mixture-of-experts layers are not implemented");
                c.OptionalInt("num_experts_per_tok", 0, 1 << 16, 0);
                c.OptionalInt("interleave_moe_layer_step", 0, 4096, 0);
                if (c.GetOptional("moe_layers", JsonValueKind.Array) is { } moe
                    && moe.GetArrayLength() > 0) throw Error("moe_layers is not empty: mixture-of-experts layers are not implemented");
                layerTypes = ModelConfig.ParseLayerTypes(c, layers, Error);
                window = c.OptionalInt("sliding_window", 1, int.MaxValue, 0);
                qkNorm = c.OptionalBool("use_qk_norm", false);
                if (c.Present("no_rope_layers"))
                {
                    int[] flags = c.IntArray("no_rope_layers", layers, 0, 1);
                    if (flags.Length != layers) throw Error($"no_rope_layers has {flags.Length} entries for {layers} layers");
                    ropeLayers = flags.Select(f => f == 1).ToArray();
                }
                else if (c.Present("no_rope_layer_interval"))
                {
                    int interval = c.Int("no_rope_layer_interval", 1, 4096);
                    ropeLayers = Enumerable.Range(0, layers).Select(i => (i + 1) % interval != 0).ToArray();
                }
                bool tuningOn = c.Present("attn_temperature_tuning")
                    && root.GetProperty("attn_temperature_tuning").ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.Number => c.Int("attn_temperature_tuning", 0, 1) == 1,
                    _ => throw Error("attn_temperature_tuning must be a boolean"),
                };
                double floorScale = c.OptionalDouble("floor_scale", 1, 1e12, 8192),
                    attnScale = c.OptionalDouble("attn_scale", 0, 1e3, 0.1);
                if (tuningOn && ropeLayers.Contains(false)) tuning = new AttentionTemperatureTuning(floorScale,
                    attnScale);
                // Llama-4 chunks the attention of RoPE layers into blocks of this many positions. Up to one chunk the
                // result is plain causal attention, so the converted model's context stops there.
                if (c.Present("attention_chunk_size"))
                {
                    int chunk = c.Int("attention_chunk_size", 1, 1 << 24);
                    if (chunk < maxPositions)
                    {
                        notes.Add($"context capped at attention_chunk_size {chunk} (max_position_embeddings is {maxPositions}): chunked attention is not implemented, and up to one chunk it equals plain attention");
                        maxPositions = chunk;
                    }
                }
                break;
            }
        }

        int? bos = c.Present("bos_token_id") ? c.Int("bos_token_id", 0, int.MaxValue) : null;
        int? pad = c.Present("pad_token_id") ? c.Int("pad_token_id", 0, int.MaxValue) : null;
        var eos = new List<int>();
        if (c.Present("eos_token_id"))
        {
            var e = root.GetProperty("eos_token_id");
            if (e.ValueKind == JsonValueKind.Number) eos.Add(c.Int("eos_token_id", 0, int.MaxValue));
            else eos.AddRange(c.IntArray("eos_token_id", 64, 0, int.MaxValue));
        }
        c.Ignore(Informational);
        c.RejectUnknown();

        var config = new ModelConfig
        {
            Architecture = architecture,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = ffn,
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            MaxPositionEmbeddings = maxPositions,
            RmsNormEps = eps,
            RopeTheta = theta,
            RopeLayout = layout,
            RopeScaling = scaling,
            TieWordEmbeddings = tie,
            LayerRepeat = repeat,
            LayerTypes = layerTypes,
            SlidingWindow = window,
            UseQkNorm = qkNorm,
            RopeLayers = ropeLayers,
            TemperatureTuning = tuning,
        };
        // The runtime's own parser is the final word on what it can run (head grouping, sliding window, ranges).
        using (var check = JsonDocument.Parse(config.ToJson())) ModelConfig.Parse(check.RootElement, path);
        return new HfConfig(family, config, wBits, bos, eos, pad, notes);
    }
}
