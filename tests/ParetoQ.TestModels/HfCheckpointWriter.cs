using System.Text;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;

namespace ParetoQ.TestModels;

/// <summary>How the projections of a generated Hugging Face checkpoint are stored.</summary>
public enum HfWeights
{
    /// <summary>Full-precision BF16 (MobileLLM v1, LlamaForCausalLM, MobileLLM-Pro base).</summary>
    FullPrecision,
    /// <summary>ParetoQ's released checkpoints: BF16 values already on the grid of <c>Grid</c>, α varying per
    /// row.</summary>
    Snapped,
    /// <summary>ParetoQ's trainer: fp32 latent weights plus <c>weight_clip_val</c> [out, 1].</summary>
    LatentWithClip,
    /// <summary>MobileLLM-Pro's accelerator variant: BF16 weights plus <c>weight_fake_quantizer.scale</c> [out,
    /// 1].</summary>
    FakeQuantScale,
}

/// <summary>
/// Writes Hugging Face checkpoint directories as the converter finds them: config.json in the source family's own
/// field names, weights (safetensors or pytorch_model.bin) under the source's tensor names, and tokenizer files.
/// Returns every stored tensor by name, as the source dtype holds it, for reference forwards over the source.
/// </summary>
public static class HfCheckpointWriter
{
    public sealed record Written(string Directory, ModelConfig Config, IReadOnlyDictionary<string, float[]> Stored,
        IReadOnlyList<SafetensorsWriter.Tensor> Tensors);

    /// <summary>A tiny LLaMA-2-vocabulary MobileLLM: the real 32000-piece tokenizer needs the full
    /// vocabulary.</summary>
    public static ModelConfig TinyMobileLlm(bool layerSharing = false) => new()
    {
        Architecture = "mobilellm", VocabSize = 32000, HiddenSize = 64, IntermediateSize = 96, NumLayers = 2,
            NumHeads = 4, NumKvHeads = 2, HeadDim = 16,
        MaxPositionEmbeddings = 128, RmsNormEps = 1e-5f, RopeTheta = 10000, RopeLayout = RopeLayout.RotateHalf,
            TieWordEmbeddings = true,
        LayerRepeat = layerSharing ? 2 : 1, LayerTypes = [AttentionKind.Global, AttentionKind.Global],
            RopeLayers = [true, true],
    };

    /// <param name="modelType">mobilellm, llama or llama4_text (MobileLLM-Pro).</param>
    /// <param name="configExtra">Extra config.json members, written verbatim (e.g. <c>"w_bits": 2</c>).</param>
    /// <param name="tokenizerFiles">Files copied into the directory (name → source path or bytes).</param>
    public static Written Write(string directory, string modelType, ModelConfig config, HfWeights weights,
        WeightFormat grid, bool pytorchBin, IReadOnlyDictionary<string, byte[]> tokenizerFiles, string configExtra = "",
            int seed = 1, bool headTensorToo = false)
    {
        Directory.CreateDirectory(directory);
        var rng = new Random(seed);
        var tensors = new List<SafetensorsWriter.Tensor>();
        var stored = new Dictionary<string, float[]>(StringComparer.Ordinal);
        bool pro = modelType == "llama4_text";
        string SourceName(string name) => pro ? name.Replace(".mlp.", ".feed_forward.", StringComparison.Ordinal)
            : name;

        void Add(string name, SourceDType dtype, long[] shape, float[] values)
        {
            var rounded = values.Select(v => RoundTo(dtype, v)).ToArray();
            tensors.Add(new SafetensorsWriter.Tensor(name, dtype, shape, rounded));
            stored[name] = rounded;
        }

        foreach (var spec in ModelTensors.For(config))
        {
            string name = SourceName(spec.Name);
            if (spec.IsNorm)
            {
                Add(name, SourceDType.BF16, [spec.Cols],
                    TestModelGenerator.Gaussian(rng, spec.Cols, 0.1f).Select(v => 1 + v).ToArray());
                continue;
            }
            float std = spec.Role is TensorRole.Embedding or TensorRole.Head ? 1f : 1f / MathF.Sqrt(spec.Cols);
            var w = TestModelGenerator.Gaussian(rng, spec.Rows * spec.Cols, std);
            bool projection = spec.Role is not (TensorRole.Embedding or TensorRole.Head);
            if (!projection || weights == HfWeights.FullPrecision)
            {
                Add(name, SourceDType.BF16, [spec.Rows, spec.Cols], w);
                continue;
            }
            // Per-row α around ParetoQ's initial scale, so rows differ as trained ones do.
            var alphas = new float[spec.Rows];
            for (int r = 0; r < spec.Rows; r++)
                alphas[r] = Quantizer.InitialScale(weights == HfWeights.FakeQuantScale ? WeightFormat.Q4Row : grid,
                    w.AsSpan(r * spec.Cols, spec.Cols)) * (0.8f + 0.4f * (float)rng.NextDouble());
            string baseName = name[..^".weight".Length];
            switch (weights)
            {
                case HfWeights.Snapped:
                    var snapped = new float[w.Length];
                    for (int i = 0; i < w.Length; i++) snapped[i] = Quantizer.FakeQuantize(grid, w[i],
                        alphas[i / spec.Cols]);
                    Add(name, SourceDType.BF16, [spec.Rows, spec.Cols], snapped);
                    break;
                case HfWeights.LatentWithClip:
                    Add(name, SourceDType.F32, [spec.Rows, spec.Cols], w);
                    Add(baseName + ".weight_clip_val", SourceDType.F32, [spec.Rows, 1], alphas);
                    break;
                case HfWeights.FakeQuantScale:
                    Add(name, SourceDType.BF16, [spec.Rows, spec.Cols], w);
                    Add(baseName + ".weight_fake_quantizer.scale", SourceDType.F32, [spec.Rows, 1], alphas);
                    break;
            }
        }
        var shared = new Dictionary<string, string>();
        if (headTensorToo && config.TieWordEmbeddings)
        {
            Add("lm_head.weight", SourceDType.BF16, [config.VocabSize, config.HiddenSize],
                stored["model.embed_tokens.weight"]);
            shared["lm_head.weight"] = "model.embed_tokens.weight";
        }

        if (pytorchBin) TorchCheckpointWriter.Write(Path.Combine(directory, TorchCheckpoint.SingleFile), tensors,
            shared);
        else SafetensorsWriter.Write(Path.Combine(directory, SafetensorsCheckpoint.SingleFile), tensors,
            new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(directory, "config.json"), ConfigJson(modelType, config, configExtra));
        foreach (var (file, bytes) in tokenizerFiles) File.WriteAllBytes(Path.Combine(directory, file), bytes);
        return new Written(directory, config, stored, tensors);
    }

    /// <summary>config.json as transformers writes it for the family.</summary>
    public static string ConfigJson(string modelType, ModelConfig c, string extra)
    {
        var sb = new StringBuilder();
        sb.Append("{\n");
        void Field(string name, string value) => sb.Append($"  \"{name}\": {value},\n");
        Field("architectures",
            modelType switch { "mobilellm" => "[\"MobileLLMForCausalLM\"]", "llama4_text" => "[\"Llama4ForCausalLM\"]",
            _ => "[\"LlamaForCausalLM\"]" });
        Field("model_type", $"\"{modelType}\"");
        Field("attention_bias", "false");
        Field("attention_dropout", "0.0");
        Field("hidden_act", "\"silu\"");
        Field("hidden_size", $"{c.HiddenSize}");
        Field("head_dim", $"{c.HeadDim}");
        Field("initializer_range", "0.02");
        Field("intermediate_size", $"{c.IntermediateSize}");
        Field("max_position_embeddings", $"{c.MaxPositionEmbeddings}");
        Field("num_attention_heads", $"{c.NumHeads}");
        Field("num_hidden_layers", $"{c.NumLayers}");
        Field("num_key_value_heads", $"{c.NumKvHeads}");
        Field("rms_norm_eps", "1e-05");
        Field("rope_theta", System.FormattableString.Invariant($"{c.RopeTheta:0.0}"));
        Field("torch_dtype", "\"bfloat16\"");
        Field("transformers_version", "\"4.56.0\"");
        Field("use_cache", "true");
        Field("vocab_size", $"{c.VocabSize}");
        if (modelType == "mobilellm")
        {
            Field("share_embedding", c.TieWordEmbeddings ? "true" : "false");
            Field("layer_sharing", c.LayerRepeat > 1 ? "true" : "false");
            Field("tie_word_embeddings", "false");
            Field("mlp_bias", "false");
            Field("pretraining_tp", "1");
            Field("rope_scaling", "null");
        }
        else if (modelType == "llama")
        {
            Field("tie_word_embeddings", c.TieWordEmbeddings ? "true" : "false");
            Field("mlp_bias", "false");
        }
        else
        {
            Field("tie_word_embeddings", "true");
            Field("intermediate_size_mlp", $"{c.IntermediateSize}");
            Field("layer_types",
                "[" + string.Join(", ",
                c.LayerTypes.Select(t => t == AttentionKind.Global ? "\"full_attention\""
                : "\"sliding_attention\"")) + "]");
            Field("sliding_window", $"{c.SlidingWindow}");
            Field("no_rope_layers", "[" + string.Join(", ", c.RopeLayers.Select(r => r ? "1" : "0")) + "]");
            Field("use_qk_norm", c.UseQkNorm ? "true" : "false");
            Field("attn_temperature_tuning", c.TemperatureTuning is null ? "false" : "true");
            if (c.TemperatureTuning is { } tt)
            {
                Field("floor_scale", System.FormattableString.Invariant($"{tt.FloorScale}"));
                Field("attn_scale", System.FormattableString.Invariant($"{tt.AttnScale}"));
            }
            if (c.RopeScaling is { } s)
                Field("rope_scaling", System.FormattableString.Invariant(
                    $"{{\"rope_type\": \"llama3\", \"factor\": {s.Factor}, \"low_freq_factor\": {s.LowFreqFactor}, \"high_freq_factor\": {s.HighFreqFactor}, \"original_max_position_embeddings\": {s.OriginalMaxPositionEmbeddings}}}"));
            Field("attention_chunk_size", "8192");
            Field("num_local_experts", "0");
            Field("moe_layers", "[]");
        }
        sb.Append(extra.Length > 0 ? $"  {extra},\n" : "");
        sb.Append(modelType == "llama4_text"
            ? "  \"bos_token_id\": 256,\n  \"eos_token_id\": [257, 260]\n}\n"
            : "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
        return sb.ToString();
    }

    /// <summary>The Llama-4-style tokenizer files of a byte-level tiktoken vocabulary (ranks, added tokens, chat
    /// template).</summary>
    public static Dictionary<string, byte[]> ByteLevelTiktokenFiles()
    {
        var info = ByteLevelVocabulary.Info(chatTokens: true);
        string added = string.Join(",\n    ",
            info.SpecialTokens.Select(kv => $"\"{kv.Value}\": {{\"content\": \"{kv.Key}\", \"special\": true}}"));
        return new Dictionary<string, byte[]>
        {
            ["tokenizer.model"] = ByteLevelVocabulary.Ranks(),
            ["tokenizer_config.json"] = Encoding.UTF8.GetBytes(
                "{\n  \"added_tokens_decoder\": {\n    " + added + "\n  },\n  \"bos_token\": \"<|begin_of_text|>\",\n  \"eos_token\": \"<|eot|>\",\n" +
                "  \"chat_template\": \"{{ bos_token }}{% for m in messages %}<|header_start|>{{ m.role }}<|header_end|>\\n\\n{{ m.content }}<|eot|>{% endfor %}\",\n" +
                "  \"model_max_length\": 131072,\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n"),
            ["special_tokens_map.json"] = Encoding.UTF8.GetBytes("{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|eot|>\"}"),
        };
    }

    public static float RoundTo(SourceDType dtype, float v) => dtype switch
    {
        SourceDType.BF16 => FloatCodec.Bf16ToSingle(FloatCodec.SingleToBf16(v)),
        SourceDType.F16 => (float)(Half)v,
        _ => v,
    };
}
