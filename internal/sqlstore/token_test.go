package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestTokenRotation(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		exp := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
		tok := &slipway.Token{ID: "t1", Name: "ci", Role: slipway.RoleEditor, CreatedAt: time.Now().UTC(), ExpiresAt: &exp}
		if err := db.CreateToken(ctx, tok, "hash-1"); err != nil {
			t.Fatal(err)
		}
		got, err := db.FindTokenByHash(ctx, "hash-1")
		if err != nil || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) {
			t.Fatalf("created token %+v, %v: want expiry %v", got, err, exp)
		}

		grace := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
		rotated, err := db.RotateToken(ctx, "t1", "hash-2", grace, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if rotated.RotatedAt == nil || rotated.PreviousSecretValidUntil == nil || !rotated.PreviousSecretValidUntil.Equal(grace) {
			t.Fatalf("rotated token %+v: want rotated_at and the grace %v", rotated, grace)
		}
		if rotated.ExpiresAt == nil || !rotated.ExpiresAt.Equal(exp) {
			t.Fatalf("a rotation without a new lifetime changed the expiry to %v", rotated.ExpiresAt)
		}
		if _, err := db.FindTokenByHash(ctx, "hash-1"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("the old hash is still the current one: %v", err)
		}
		if old, err := db.FindTokenByPreviousHash(ctx, "hash-1"); err != nil || old.ID != "t1" {
			t.Fatalf("previous hash lookup: %+v, %v", old, err)
		}
		if cur, err := db.FindTokenByHash(ctx, "hash-2"); err != nil || cur.ID != "t1" {
			t.Fatalf("new hash lookup: %+v, %v", cur, err)
		}

		// A second rotation with a new lifetime: only the latest old secret is remembered.
		if _, err := db.RotateToken(ctx, "t1", "hash-3", grace, nil, true); err != nil {
			t.Fatal(err)
		}
		if _, err := db.FindTokenByPreviousHash(ctx, "hash-1"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("a secret two rotations old still resolves: %v", err)
		}
		if cur, err := db.FindTokenByHash(ctx, "hash-3"); err != nil || cur.ExpiresAt != nil {
			t.Fatalf("rotation that clears the expiry: %+v, %v", cur, err)
		}

		if err := db.RevokeToken(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RotateToken(ctx, "t1", "hash-4", grace, nil, false); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Fatalf("rotating a revoked token: %v, want ECONFLICT", err)
		}
		if _, err := db.RotateToken(ctx, "nope", "hash-5", grace, nil, false); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Fatalf("rotating an unknown token: %v, want ENOTFOUND", err)
		}
	})
}
