using System.Buffers.Binary;
using System.Text;

namespace ParetoQ.Runtime.Text;

/// <summary>SentencePiece's piece types; GGUF's <c>tokenizer.ggml.token_type</c> uses the same numbers.</summary>
public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

/// <summary>One vocabulary entry as a SentencePiece model holds it.</summary>
public readonly record struct SentencePiece(string Piece, float Score, PieceType Type);

// sentencepiece_model.proto: ModelProto { 1: repeated SentencePiece pieces; 2: TrainerSpec; 3: NormalizerSpec }
public sealed partial class SentencePieceBpeTokenizer
{

    /// <summary>
    /// Reads a SentencePiece <c>tokenizer.model</c> (a ModelProto protobuf) of type BPE with byte fallback, as
    /// LLaMA-1/2 ship. Merges follow sentencepiece's rule: adjacent symbols whose concatenation is a piece merge in
    /// order of that piece's score, highest first, leftmost first among equal scores.
    /// </summary>
    public static SentencePieceBpeTokenizer FromSentencePieceModel(ReadOnlySpan<byte> model, string source)
    {
        var pieces = new List<(string Piece, float Score, PieceType Type)>();
        int modelType = 1; // UNIGRAM is the proto default
        bool byteFallback = false, addDummyPrefix = true, removeExtraWhitespace = true, escapeWhitespace = true;
        string normalizer = "";
        var reader = new ProtoReader(model, source);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
            {
                var p = reader.Message();
                string piece = ""; float score = 0; var type = PieceType.Normal;
                while (p.Next(out int f, out int w))
                {
                    if (f == 1 && w == 2) piece = p.String();
                    else if (f == 2 && w == 5) score = p.Fixed32Float();
                    else if (f == 3 && w == 0) type = (PieceType)p.Varint();
                    else p.Skip(w);
                }
                if (!Enum.IsDefined(type)) throw new TokenizerException(source,
                    $"piece {pieces.Count} has unknown type {(int)type}");
                pieces.Add((piece, score, type));
            }
            else if (field == 2 && wire == 2)
            {
                var t = reader.Message();
                while (t.Next(out int f, out int w))
                {
                    if (f == 3 && w == 0) modelType = (int)t.Varint();
                    else if (f == 35 && w == 0) byteFallback = t.Varint() != 0;
                    else t.Skip(w);
                }
            }
            else if (field == 3 && wire == 2)
            {
                var n = reader.Message();
                while (n.Next(out int f, out int w))
                {
                    if (f == 1 && w == 2) normalizer = n.String();
                    else if (f == 3 && w == 0) addDummyPrefix = n.Varint() != 0;
                    else if (f == 4 && w == 0) removeExtraWhitespace = n.Varint() != 0;
                    else if (f == 5 && w == 0) escapeWhitespace = n.Varint() != 0;
                    else n.Skip(w);
                }
            }
            else reader.Skip(wire);
        }
        if (modelType != 2) throw new TokenizerException(source,
            $"model type {modelType} is not supported (expected 2, BPE)");
        if (!byteFallback) throw new TokenizerException(source, "only byte_fallback BPE is supported");
        if (normalizer != "identity" || !addDummyPrefix || removeExtraWhitespace || !escapeWhitespace)
            throw new TokenizerException(source,
                $"normalizer '{normalizer}' (dummy prefix {addDummyPrefix}, remove extra whitespace {removeExtraWhitespace}, escape whitespace {escapeWhitespace}) is not supported; LLaMA uses identity, true, false, true");
        if (pieces.Count == 0) throw new TokenizerException(source, "the model has no pieces");

        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var control = new bool[pieces.Count];
        for (int i = 0; i < pieces.Count; i++)
        {
            var (piece, _, type) = pieces[i];
            if (Encoding.UTF8.GetByteCount(piece) > ITokenizer.MaxTokenBytes) throw new TokenizerException(source,
                $"piece {i} is longer than {ITokenizer.MaxTokenBytes} bytes");
            if (!ids.TryAdd(piece, i)) throw new TokenizerException(source, $"piece '{piece}' appears twice");
            control[i] = type is PieceType.Control or PieceType.Unknown or PieceType.Unused;
        }

        // Every way to split a mergeable piece into two pieces is a merge; rank = dense rank of the piece's score.
        var ranks = pieces.Where(p => p.Type is PieceType.Normal or PieceType.UserDefined).Select(p
            => p.Score).Distinct().OrderByDescending(s => s)
            .Select((score, rank) => (score, rank)).ToDictionary(x => x.score, x => x.rank);
        var merges = new Dictionary<(int, int), (int, int)>();
        for (int id = 0; id < pieces.Count; id++)
        {
            var (piece, score, type) = pieces[id];
            if (type is not (PieceType.Normal or PieceType.UserDefined)) continue;
            for (int split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split])) continue;
                if (ids.TryGetValue(piece[..split], out int left) && ids.TryGetValue(piece[split..], out int right)
                    && !control[left] && !control[right])
                    merges[(left, right)] = (ranks[score], id);
            }
        }
        int unk = pieces.FindIndex(p => p.Type == PieceType.Unknown);
        return new SentencePieceBpeTokenizer([.. pieces.Select(p => p.Piece)], ids, merges, control,
            ids.GetValueOrDefault("<s>", -1), unk);
    }

    /// <summary>A bounds-checked protobuf wire-format reader: every length is checked before use.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data, string source)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private readonly string _source = source;
        private int _pos;

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_pos >= _data.Length) return false;
            ulong key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field == 0) throw Error("field number 0");
            return true;
        }

        public ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length) throw Error("truncated varint");
                byte b = _data[_pos++];
                v |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return v;
            }
            throw Error("varint longer than 10 bytes");
        }

        public ReadOnlySpan<byte> Bytes()
        {
            ulong length = Varint();
            if (length > (ulong)(_data.Length - _pos)) throw Error($"a {length}-byte field runs past the end");
            var span = _data.Slice(_pos, (int)length);
            _pos += (int)length;
            return span;
        }

        public ProtoReader Message() => new(Bytes(), _source);

        public string String()
        {
            try { return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(Bytes()); }
            catch (DecoderFallbackException) { throw Error("a string is not valid UTF-8"); }
        }

        public float Fixed32Float()
        {
            if (_data.Length - _pos < 4) throw Error("truncated fixed32");
            float v = BinaryPrimitives.ReadSingleLittleEndian(_data[_pos..]);
            _pos += 4;
            return v;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: if (_data.Length - _pos < 8) throw Error("truncated fixed64"); _pos += 8; break;
                case 2: Bytes(); break;
                case 5: if (_data.Length - _pos < 4) throw Error("truncated fixed32"); _pos += 4; break;
                default: throw Error($"unsupported wire type {wire}");
            }
        }

        private readonly TokenizerException Error(string problem)
            => new(_source, $"tokenizer.model is not a valid SentencePiece model: {problem} at byte {_pos}");
    }
}
