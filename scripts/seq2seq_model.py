"""PyTorch twin of recurrent's Seq2Seq (lib/nn/seq2seq.ts) and its attention modules, with the same
parameter names, so that a state dict moves between the two unchanged. Used by
scripts/seq2seq-fixtures.py (golden values for test/88) and bench/seq2seq_torch.py (the speed
comparison). Run with Debian's python3-torch (1.13): /usr/bin/python3.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

MASKED = -1e30


class BahdanauAttention(nn.Module):
    """score(q, k_j) = v . tanh(W_q q + b_q + W_k k_j)"""

    def __init__(self, query_size, key_size, attention_size):
        super().__init__()
        self.query = nn.Linear(query_size, attention_size)
        self.key = nn.Linear(key_size, attention_size, bias=False)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, keys):
        return self.key(keys)

    def score(self, query, projected):  # [B, Tq, Hq], [B, S, A] -> [B, Tq, S]
        return self.v(torch.tanh(self.query(query).unsqueeze(2) + projected.unsqueeze(1))).squeeze(-1)


class LuongAttention(nn.Module):
    """general: q . W_a k_j; dot: q . k_j"""

    def __init__(self, query_size, key_size, score='general'):
        super().__init__()
        self.scoring = score
        if score == 'general':
            self.key = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, keys):
        return self.key(keys) if self.scoring == 'general' else keys

    def score(self, query, projected):
        return torch.bmm(query, projected.transpose(1, 2))


def attend(attention, query, keys, values, lengths=None):
    """context [B, Tq, Hv], weights [B, Tq, S]: softmax of the scores over the unmasked positions."""
    scores = attention.score(query, attention.project_keys(keys))
    if lengths is not None:
        S = keys.shape[1]
        mask = torch.arange(S)[None, :] >= torch.as_tensor(lengths)[:, None]
        scores = scores + mask[:, None, :].float() * MASKED
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, values), weights


class Seq2Seq(nn.Module):
    def __init__(self, cell, source_vocab, target_vocab, embedding_dim, hidden_size, num_layers=1, bidirectional=True,
                 attention='bahdanau', attention_size=None, dropout=0.0, context_feeding=False):
        super().__init__()
        Cell = nn.LSTM if cell == 'lstm' else nn.GRU
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.target_vocab = target_vocab
        self.source_embedding = nn.Embedding(source_vocab, embedding_dim)
        self.encoder = Cell(embedding_dim, hidden_size // 2 if bidirectional else hidden_size, num_layers,
                            bidirectional=bidirectional, dropout=dropout)
        self.target_embedding = nn.Embedding(target_vocab + 1, embedding_dim)
        # context feeding (GNMT): layer 1 queries the attention, layers 2..L read [context; layer 1's state]
        self.context_feeding = context_feeding
        self.decoder = Cell(embedding_dim, hidden_size, 1 if context_feeding else num_layers, dropout=dropout)
        if context_feeding:
            self.decoder_upper = Cell(2 * hidden_size, hidden_size, num_layers - 1, dropout=dropout)
        self.kind = attention
        if attention == 'bahdanau':
            self.attention = BahdanauAttention(hidden_size, hidden_size, attention_size or hidden_size)
        elif attention in ('luong', 'dot'):
            self.attention = LuongAttention(hidden_size, hidden_size, 'dot' if attention == 'dot' else 'general')
        if attention != 'none':
            self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, target_vocab + 1)

    def batches(self, sources, targets):
        """Padded tensors as recurrent's Seq2Seq builds them."""
        B = len(sources)
        S = max(len(s) for s in sources)
        source = torch.zeros(S, B, dtype=torch.long)
        for b, s in enumerate(sources):
            source[:len(s), b] = torch.tensor(s)
        T = max(len(t) for t in targets) + 1
        inputs = torch.full((B, T), self.target_vocab, dtype=torch.long)
        outputs = torch.full((B, T), -100, dtype=torch.long)
        for b, t in enumerate(targets):
            inputs[b, 1:len(t) + 1] = torch.tensor(t, dtype=torch.long)
            outputs[b, :len(t)] = torch.tensor(t, dtype=torch.long)
            outputs[b, len(t)] = self.target_vocab
        return source, [len(s) for s in sources], inputs, outputs

    def forward(self, source, lengths, inputs):
        """logits [B, T, C], weights [B, T, S] or None (teacher forcing)."""
        S, B = source.shape
        x = F.dropout(self.source_embedding(source), self.dropout, self.training)
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), enforce_sorted=False)
        out, state = self.encoder(packed)
        values, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=S)  # [S, B, H]

        def bridge(h):
            if not self.bidirectional:
                return h
            L, half = self.num_layers, self.hidden_size // 2
            return h.reshape(L, 2, B, half).permute(0, 2, 1, 3).reshape(L, B, 2 * half)

        state = tuple(bridge(s) for s in state) if self.cell == 'lstm' else bridge(state)
        y = F.dropout(self.target_embedding(inputs.t()), self.dropout, self.training)
        first = (lambda s: s[:1]) if self.context_feeding else (lambda s: s)
        rest = lambda s: s[1:]
        pick = lambda f: tuple(f(s) for s in state) if self.cell == 'lstm' else f(state)
        lower, _ = self.decoder(y, pick(first))
        states = lower.transpose(0, 1)  # [B, T, H]
        weights = None
        features = states
        if self.kind != 'none':
            memory = values.transpose(0, 1)
            context, weights = attend(self.attention, states, memory, memory, lengths)
            if self.context_feeding:
                fed = torch.cat([context.transpose(0, 1), F.dropout(lower, self.dropout, self.training)], dim=2)
                upper, _ = self.decoder_upper(fed, pick(rest))
                states = upper.transpose(0, 1)
            features = torch.tanh(self.combine(torch.cat([context, states], dim=2)))
        return self.output(F.dropout(features, self.dropout, self.training)), weights

    def loss(self, source, lengths, inputs, outputs):
        logits, _ = self.forward(source, lengths, inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), outputs.reshape(-1), ignore_index=-100)
